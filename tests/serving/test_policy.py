"""Serving policies: cutoffs, reason maps, missing-value rules, and their checks at deploy time."""

from __future__ import annotations

import pytest

from lendml.core.config import ProjectConfig, ServingSettings
from lendml.errors import ConfigError
from lendml.models import FeatureSchema, FeatureSpec, ReasonCode
from lendml.serving.policy import DecisionPolicy, ReasonMap, ServingPolicy
from tests.serving.online_world import REASON_MAP, write_json

SCHEMA = FeatureSchema(
    (
        FeatureSpec("income"),
        FeatureSpec("dti"),
        FeatureSpec("utilization"),
        FeatureSpec("home", "categorical", ("own", "rent")),
        FeatureSpec("loan_to_income"),
    )
)


@pytest.mark.parametrize(
    ("p", "decision"),
    [
        (0.0, "approve"),
        (0.0999, "approve"),
        (0.1, "refer"),
        (0.2999, "refer"),
        (0.3, "decline"),
        (1.0, "decline"),
    ],
)
def test_cutoffs_approve_below_and_decline_from(p, decision):
    assert DecisionPolicy(approve_below=0.1, decline_from=0.3).decide(p) == decision


def test_equal_cutoffs_have_no_refer_band():
    policy = DecisionPolicy(approve_below=0.2, decline_from=0.2)
    assert [policy.decide(p) for p in (0.19, 0.2)] == ["approve", "decline"]


def test_the_config_refuses_crossed_cutoffs_and_unknown_settings():
    with pytest.raises(ValueError, match="decline_from"):
        ServingSettings.model_validate(
            {"models": {"m": {"decision": {"approve_below": 0.5, "decline_from": 0.2}}}}
        )
    with pytest.raises(ValueError, match="top"):
        ServingSettings.model_validate({"models": {"m": {"reasons": {"top": 5}}}})
    with pytest.raises(ValueError, match="percent"):
        ServingSettings.model_validate(
            {"models": {"m": {"canary": {"ref": "challenger", "percent": 150}}}}
        )
    with pytest.raises(ValueError, match="extra"):
        ServingSettings.model_validate({"models": {"m": {"cutoff": 0.3}}})
    cfg = ProjectConfig.model_validate(
        {
            "serving": {
                "model": "m",
                "models": {"m": {"missing": {"default": "reject", "features": {"dti": 0.4}}}},
            }
        }
    )
    assert cfg.serving.for_model("m").missing.features == {"dti": 0.4}
    assert cfg.serving.for_model("other").missing.default == "allow"


def test_a_reason_map_file_is_read_and_checked(tmp_path):
    path = write_json(tmp_path / "reasons.json", REASON_MAP)
    rmap = ReasonMap.load(path)
    assert rmap.describe("burden").code == "R20"
    assert rmap.describe("unmapped").text == "unmapped"
    yaml_path = tmp_path / "reasons.yaml"
    yaml_path.write_text("reasons:\n  dti: {code: R1, text: Debt too high}\ngroups: {}\n")
    assert ReasonMap.load(yaml_path).describe("dti").text == "Debt too high"
    for bad, message in (
        ({"reasons": {"dti": {"code": "R1"}}}, "code: TEXT, text: TEXT"),
        ({"reasons": {"dti": {"code": "", "text": "x"}}}, "non-empty"),
        ({"groups": {"dti": 3}}, "group name"),
        ({"reason": {}}, "unknown section"),
    ):
        with pytest.raises(ConfigError, match=message):
            ReasonMap.from_dict(bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        ReasonMap.load(tmp_path / "absent.yaml")


def test_a_policy_that_does_not_fit_the_model_is_refused():
    full = ReasonMap.from_dict(REASON_MAP)
    ServingPolicy(reason_map=full).check(SCHEMA)
    no_home = ReasonMap(
        reasons={k: v for k, v in full.reasons.items() if k != "home"}, groups=full.groups
    )
    ServingPolicy(reason_map=no_home, protected=frozenset({"home"})).check(SCHEMA)
    with pytest.raises(ConfigError, match=r"no code and text for \['home'\]"):
        ServingPolicy(reason_map=no_home).check(SCHEMA)  # home may be a reason: needs wording
    ServingPolicy(reason_map=no_home).check(SCHEMA, protected=["home"])  # the model's own list
    with pytest.raises(ConfigError, match=r"missing.features names feature\(s\) \['salary'\]"):
        ServingPolicy(missing={"salary": "reject"}).check(SCHEMA)
    with pytest.raises(ConfigError, match="categorical"):
        ServingPolicy(ranges={"home": (0.0, 1.0)}).check(SCHEMA)
    with pytest.raises(ConfigError, match=r"groups names feature\(s\) \['card'\]"):
        ServingPolicy(reason_map=ReasonMap(groups={"card": "burden"})).check(SCHEMA)


def test_a_policy_is_built_from_settings_with_files_relative_to_the_project(tmp_path):
    write_json(tmp_path / "maps" / "reasons.json", REASON_MAP)
    write_json(tmp_path / "ref.json", {"features": ["x"], "values": {"x": 1.0}})
    settings = ServingSettings.model_validate(
        {
            "models": {
                "m": {
                    "decision": {"approve_below": 0.1, "decline_from": 0.3},
                    "reasons": {
                        "map": "maps/reasons.json",
                        "top": 2,
                        "protected": ["home"],
                        "reference_point": "ref.json",
                    },
                    "missing": {"features": {"dti": "reject"}},
                    "ranges": {"dti": [0, 5]},
                }
            }
        }
    )
    policy = ServingPolicy.from_settings(settings.for_model("m"), root=tmp_path)
    assert policy.decision == DecisionPolicy(0.1, 0.3)
    assert policy.top == 2 and policy.protected == {"home"}
    assert policy.fill_rule("dti") == "reject" and policy.fill_rule("income") == "allow"
    assert policy.reference_point == {"features": ["x"], "values": {"x": 1.0}}
    reason = ReasonCode("burden", 0.5, ("dti", "utilization"))
    assert policy.wording(reason) == {
        "code": "R20",
        "text": REASON_MAP["reasons"]["burden"]["text"],
        "features": ["dti", "utilization"],
        "contribution": 0.5,
    }
    with pytest.raises(ConfigError, match="cannot be read as JSON"):
        ServingPolicy.from_settings(
            ServingSettings.model_validate(
                {"models": {"m": {"reasons": {"reference_point": "nope.json"}}}}
            ).for_model("m"),
            root=tmp_path,
        )
