"""The approval holdout (``decision.explore``): the draw, the ceiling, the config, the API."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lendml.core.config import (
    DecisionSettings,
    ExploreSettings,
    ModelServingSettings,
    ProjectConfig,
    ReasonSettings,
    ServingSettings,
)
from lendml.errors import ConfigError
from lendml.serving.app import create_app
from lendml.serving.lifecycle import canary_bucket
from lendml.serving.policy import DecisionPolicy, ExplorePolicy, ServingPolicy, explore_bucket
from tests.serving.online_world import (
    MODEL,
    N_BORROWERS,
    REASON_MAP,
    fit_model,
    http_client,
    mlflow_template,  # noqa: F401 - fixture
    new_world,
    world,  # noqa: F401 - fixture
    write_json,
)

APPROVE_BELOW, DECLINE_FROM, CEILING, PERCENT = 0.35, 0.65, 0.9, 10.0


# --------------------------------------------------------------------------- the draw
def test_the_draw_is_deterministic_per_model_and_entity():
    a = explore_bucket("credit_pd", {"borrower_id": 7})
    assert a == explore_bucket("credit_pd", {"borrower_id": 7})  # a re-application
    assert 0 <= a < 100
    assert a != explore_bucket("other_model", {"borrower_id": 7})
    assert a != explore_bucket("credit_pd", {"borrower_id": 8})
    # the order of the keys does not matter
    two = {"borrower_id": 7, "product": "card"}
    assert explore_bucket("m", two) == explore_bucket("m", dict(reversed(two.items())))


def test_the_draw_is_not_the_canary_draw():
    # with the same hash, a 10% canary would take every explored applicant
    keys = [{"borrower_id": i} for i in range(4000)]
    explored = [k for k in keys if explore_bucket("m", k) < 10]
    in_canary = [k for k in explored if canary_bucket("m", k) < 10]
    assert 0.05 < len(in_canary) / len(explored) < 0.15


@settings(max_examples=25, deadline=None)
@given(
    percent=st.floats(min_value=0.5, max_value=10.0),
    model=st.text(min_size=1, max_size=12),
    offset=st.integers(min_value=0, max_value=10**12),
)
def test_the_share_explored_is_close_to_the_percent(percent, model, offset):
    n = 20_000
    policy = ExplorePolicy(percent=percent, max_probability=1.0)
    hits = sum(
        policy.explores(model, {"application_id": offset + i}, 0.5, "decline") for i in range(n)
    )
    p = percent / 100
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(hits / n - p) < 5 * sd  # a failure by chance: about 1 in 1.7 million


@settings(max_examples=200, deadline=None)
@given(
    probability=st.floats(min_value=0.0, max_value=1.0),
    ceiling=st.floats(min_value=0.01, max_value=1.0),
    key=st.integers() | st.text(max_size=20),
    decision=st.sampled_from(["approve", "refer", "decline"]),
)
def test_nothing_at_or_above_the_ceiling_and_no_approval_is_explored(
    probability, ceiling, key, decision
):
    policy = ExplorePolicy(percent=10.0, max_probability=ceiling)
    explored = policy.explores("m", {"id": key}, probability, decision)
    if probability >= ceiling or decision == "approve":
        assert not explored
    else:
        assert explored == (explore_bucket("m", {"id": key}) < 10.0)


def test_percent_zero_and_no_holdout_explore_nobody():
    off = DecisionPolicy(approve_below=0.1, decline_from=0.3)
    zero = DecisionPolicy(
        approve_below=0.1, decline_from=0.3, explore=ExplorePolicy(max_probability=1.0)
    )
    for k in range(2000):
        assert not off.explores("m", {"id": k}, 0.5, "decline")
        assert not zero.explores("m", {"id": k}, 0.5, "decline")
    # the default config has no holdout
    assert ServingSettings().for_model("m").decision.explore is None


def test_the_draw_uses_the_configured_keys_and_no_key_means_no_draw():
    policy = ExplorePolicy(percent=10.0, max_probability=1.0, keys=("borrower_id",))
    chosen = next(k for k in range(1000) if explore_bucket("m", {"borrower_id": k}) < 10)
    # the draw ignores other keys (an application id changes on every application)
    assert policy.explores("m", {"borrower_id": chosen, "application_id": "A-1"}, 0.5, "refer")
    assert policy.explores("m", {"borrower_id": chosen, "application_id": "A-2"}, 0.5, "refer")
    assert not policy.explores("m", {"application_id": "A-1"}, 0.5, "refer")
    assert not policy.explores("m", {"borrower_id": None}, 0.5, "refer")
    assert not ExplorePolicy(percent=10.0, max_probability=1.0).explores("m", {}, 0.5, "refer")


def test_only_the_decisions_named_are_explored():
    policy = ExplorePolicy(percent=100.0, max_probability=1.0, decisions=frozenset({"decline"}))
    assert policy.explores("m", {"id": 1}, 0.5, "decline")
    assert not policy.explores("m", {"id": 1}, 0.5, "refer")


# --------------------------------------------------------------------------- config
def decision(**explore: Any) -> dict[str, Any]:
    return {"models": {"m": {"decision": {"approve_below": 0.2, "decline_from": 0.4, **explore}}}}


@pytest.mark.parametrize(
    ("explore", "message"),
    [
        ({"percent": 11, "max_probability": 0.5}, "percent"),
        ({"percent": -1, "max_probability": 0.5}, "percent"),
        ({"percent": float("nan"), "max_probability": 0.5}, "percent"),
        ({"percent": 2}, "max_probability"),
        ({"percent": 2, "max_probability": 1.5}, "max_probability"),
        ({"percent": 2, "max_probability": 0.2}, r"must exceed 0\.2 .* approves nobody"),
        (
            {"percent": 2, "max_probability": 0.3, "decisions": ["decline"]},
            r"must exceed 0\.4",
        ),
        ({"percent": 2, "max_probability": 0.5, "decisions": ["approve"]}, "decisions"),
        ({"percent": 2, "max_probability": 0.5, "decisions": []}, "decisions"),
        ({"percent": 2, "max_probability": 0.5, "seed": 3}, "extra"),
    ],
)
def test_bad_holdout_settings_are_refused_with_the_setting_named(tmp_path, explore, message):
    with pytest.raises(ValueError, match=message):
        ServingSettings.model_validate(decision(explore=explore))
    # from lendml.yaml: a ConfigError naming the entry and the bad value
    import yaml

    from lendml.core.config import load_config

    (tmp_path / "lendml.yaml").write_text(yaml.safe_dump({"serving": decision(explore=explore)}))
    with pytest.raises(ConfigError, match="serving.models.m.decision"):
        load_config(tmp_path)


def test_the_holdout_settings_reach_the_policy():
    cfg = ProjectConfig.model_validate(
        {
            "serving": decision(
                explore={"percent": 2.5, "max_probability": 0.5, "keys": ["borrower_id"]}
            )
        }
    )
    policy = ServingPolicy.from_settings(cfg.serving.for_model("m"))
    assert policy.decision.explore == ExplorePolicy(
        percent=2.5,
        max_probability=0.5,
        keys=("borrower_id",),
        decisions=frozenset({"decline", "refer"}),
    )


def test_explore_keys_must_be_entity_keys_of_the_feature_service(world):  # noqa: F811
    write_json(world.root / "reasons.json", REASON_MAP)
    world.promote(world.register(fit_model()))
    explore = ExploreSettings(percent=2.0, max_probability=0.8, keys=("customer_id",))
    manager = world.manager(serving(explore))
    with pytest.raises(ConfigError, match=r"explore\.keys names \['customer_id'\]"):
        manager.start(watch=False)
    manager.close()


# --------------------------------------------------------------------------- the service
def serving(explore: ExploreSettings | None) -> ServingSettings:
    policy = ModelServingSettings(
        decision=DecisionSettings(
            approve_below=APPROVE_BELOW, decline_from=DECLINE_FROM, explore=explore
        ),
        reasons=ReasonSettings(map="reasons.json", protected=("home",)),
    )
    return ServingSettings(model=MODEL, watch_interval=0, max_batch=400, models={MODEL: policy})


@pytest.fixture(scope="module")
def explored(tmp_path_factory, mlflow_template):  # noqa: F811 - the fixture above
    served = new_world(tmp_path_factory.mktemp("explore"), mlflow_template)
    write_json(served.root / "reasons.json", REASON_MAP)
    served.promote(served.register(fit_model()))
    manager = served.manager(
        serving(ExploreSettings(percent=PERCENT, max_probability=CEILING, keys=("borrower_id",)))
    )
    manager.start(watch=False)
    keys = served.keys()
    token, _ = keys.create(scope="score", name="web")
    client = http_client(create_app(manager, keys=keys, sink=served.sink))
    headers = {"Authorization": f"Bearer {token}"}
    ids = list(range(1, N_BORROWERS + 1))
    items = [{"entity": {"borrower_id": i}, "fields": {"loan_amount": 30000}} for i in ids]
    res = client.post("/v1/score:batch", json={"items": items}, headers=headers)
    assert res.status_code == 200, res.text
    yield served, client, headers, ids, res.json()["results"]
    manager.close()
    served.store.close()


def test_the_holdout_approves_the_drawn_would_be_declines_below_the_ceiling(explored):
    _, _, _, ids, results = explored
    drawn = 0
    for borrower, r in zip(ids, results, strict=True):
        p = r["probability"]
        cutoffs = "approve" if p < APPROVE_BELOW else "decline" if p >= DECLINE_FROM else "refer"
        assert r["policy_decision"] == cutoffs
        eligible = cutoffs != "approve" and p < CEILING
        expected = eligible and explore_bucket(MODEL, {"borrower_id": borrower}) < PERCENT
        assert r["explore"] is expected
        assert r["decision"] == ("approve" if expected else cutoffs)
        drawn += expected
    assert drawn >= 3, "the world should hold a few explored applicants"
    assert any(r["policy_decision"] == "decline" and r["explore"] for r in results)


def test_an_explored_approval_is_logged_with_its_would_be_decline_reasons(explored):
    served, _, _, _, results = explored
    logged = {rec.request_id: rec for rec in served.sink.records}
    for r in results:
        record = logged[r["request_id"]]
        assert (record.decision, record.policy_decision, record.explore) == (
            r["decision"],
            r["policy_decision"],
            r["explore"],
        )
        if r["explore"] and r["policy_decision"] == "decline":
            assert r["decision"] == "approve"
            assert r["reasons"] == []  # the response never reads as a decline
            assert 1 <= len(record.reasons) <= 4  # the audit keeps the adverse reasons
            assert all(reason["reason_code"] for reason in record.reasons)


def test_reasons_of_an_explored_approval_are_returned_on_request(explored):
    _, client, headers, ids, results = explored
    borrower = next(
        i
        for i, r in zip(ids, results, strict=True)
        if r["explore"] and r["policy_decision"] == "decline"
    )
    body = {"entity": {"borrower_id": borrower}, "fields": {"loan_amount": 30000}}
    again = client.post("/v1/score", json={**body, "explain": True}, headers=headers).json()
    assert (again["decision"], again["explore"]) == ("approve", True)  # the same draw
    assert again["reasons"]


def test_explored_approvals_are_counted(explored):
    _, client, headers, _, results = explored
    text = client.get("/metrics", headers=headers).text
    declines = sum(r["explore"] and r["policy_decision"] == "decline" for r in results)
    line = (
        f'lendml_explored_approvals_total{{model="{MODEL}",policy_decision="decline",'
        f'role="champion",version="1"}}'
    )
    counted = next(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))
    assert counted >= declines  # the explain request above may add one


def test_without_a_holdout_nothing_is_explored(world):  # noqa: F811
    write_json(world.root / "reasons.json", REASON_MAP)
    world.promote(world.register(fit_model()))
    for explore in (None, ExploreSettings(percent=0.0, max_probability=CEILING)):
        manager = world.manager(serving(explore))
        manager.start(watch=False)
        try:
            keys = world.keys()
            token, _ = keys.create(scope="score")
            client = http_client(create_app(manager, keys=keys, sink=world.sink))
            items = [
                {"entity": {"borrower_id": i}, "fields": {"loan_amount": 30000}}
                for i in range(1, N_BORROWERS + 1)
            ]
            res = client.post(
                "/v1/score:batch",
                json={"items": items},
                headers={"Authorization": f"Bearer {token}"},
            ).json()["results"]
            assert not any(r["explore"] for r in res)
            assert all(r["decision"] == r["policy_decision"] for r in res)
            assert any(r["decision"] == "decline" for r in res)
        finally:
            manager.close()
