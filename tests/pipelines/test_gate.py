"""The promotion gate on hand-built cases: each check passes and fails where it should.

Scores are P(bad). Simulated rows draw labels from a logistic of a signal; the challenger
is the true probability and the champion the same logistic of a noisy signal (the same
marginal distribution, so only the ranking differs).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lendml.core.config import GateSettings
from lendml.evaluation import fit_bins
from lendml.pipelines.gate import GateResult, gate

ORDER = ["rows", "non_inferior", "better", "calibration", "fairness", "score_psi"]


def _checks(result: GateResult) -> dict[str, object]:
    return {c.name: c for c in result.checks}


def _world(seed: int, n: int = 3000, rho: float = 0.4):
    """Labels from logistic(signal); challenger = the true P(bad), champion = noisy signal."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    noisy = rho * signal + np.sqrt(1 - rho**2) * rng.normal(size=n)  # same N(0, 1) marginal
    challenger = 1 / (1 + np.exp(-(-1.5 + 1.2 * signal)))
    champion = 1 / (1 + np.exp(-(-1.5 + 1.2 * noisy)))
    y = (rng.uniform(size=n) < challenger).astype(int)
    return y, champion, challenger


def _uniform_world(seed: int, n: int = 2000):
    """P(bad) uniform on [0.02, 0.4] (so twice it is still a probability) and its labels."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.4, size=n)
    return (rng.uniform(size=n) < p).astype(int), p


# --------------------------------------------------------------------------- AUC checks


def test_identical_scores_are_non_inferior_but_not_better(seed):
    y, _, p = _world(seed)
    result = gate(y, p, p)
    checks = _checks(result)
    assert [c.name for c in result.checks] == ORDER
    assert checks["non_inferior"].passed
    assert not checks["better"].passed
    assert "no drift or decay trigger" in checks["better"].detail
    assert result.comparison["diff"] == 0.0 and result.comparison["verdict"] == "non-inferior"
    assert not result.passed
    assert [c.name for c in result.failed] == ["better"]
    assert result.summary == "failed: " + checks["better"].detail


@pytest.mark.parametrize(
    ("triggers", "passes"),
    [
        (["drift"], True),
        (["decay"], True),
        (["schedule", "decay"], True),
        (["schedule"], False),
        (["labels"], False),
        ([], False),
    ],
)
def test_only_a_drift_or_decay_trigger_lets_a_non_inferior_challenger_in(seed, triggers, passes):
    y, _, p = _world(seed)
    result = gate(y, p, p, triggers=triggers)
    better = _checks(result)["better"]
    assert better.passed is passes
    assert result.passed is passes
    assert better.value["triggers"] == triggers
    if passes:
        degraded = next(t for t in triggers if t in ("drift", "decay"))
        assert better.detail.endswith(f"brought in by {degraded}")


def test_a_trigger_does_not_excuse_an_inferior_challenger(seed):
    y, champion, challenger = _world(seed)
    # the roles swapped: the "challenger" is the noisy one, clearly worse
    result = gate(y, challenger, champion, triggers=["drift"])
    checks = _checks(result)
    assert checks["better"].passed  # brought in by drift...
    assert not checks["non_inferior"].passed  # ...but worse by more than the margin
    assert not result.passed
    assert result.comparison["diff"] < -0.05


def test_a_clearly_better_challenger_on_simulated_data_passes(seed):
    y, champion, challenger = _world(seed)
    rng = np.random.default_rng(seed + 1)
    protected = pd.DataFrame({"sex": rng.choice(["F", "M"], len(y))})  # unrelated to risk
    result = gate(y, champion, challenger, protected=protected, cutoff=0.2)
    checks = _checks(result)
    assert result.passed, result.summary
    assert result.comparison["verdict"] == "superior"
    assert result.comparison["auc_challenger"] > result.comparison["auc_champion"] + 0.05
    assert checks["better"].value["p_superiority"] < 0.05
    assert "better by DeLong" in checks["better"].detail
    assert "within [0.8, 1.25]" in checks["calibration"].detail
    assert checks["fairness"].value  # tested, with a row per non-reference group
    assert "lowest adverse impact ratio" in checks["fairness"].detail
    assert checks["score_psi"].value < 0.05  # same marginal distribution
    assert result.summary.startswith("passed: ")


# --------------------------------------------------------------------------- calibration


def test_a_challenger_scaled_by_two_fails_calibration_with_its_ratio(seed):
    y, p = _uniform_world(seed)
    # the same ranking; the score PSI (doubled scores drift too) is not under test here
    settings = GateSettings(score_psi_max=10.0)
    result = gate(y, p, 2 * p, triggers=["drift"], settings=settings)
    check = _checks(result)["calibration"]
    ratio = (2 * p).mean() / y.mean()  # recomputed naively
    assert 1.7 < ratio < 2.3
    assert not check.passed and not result.passed
    assert check.value["ratio"] == pytest.approx(ratio)
    assert check.value["champion_ratio"] == pytest.approx(p.mean() / y.mean())
    assert f"= {ratio:.3f}" in check.detail
    assert "outside [0.8, 1.25] and no closer to 1" in check.detail
    assert [c.name for c in result.failed] == ["calibration"]


def test_an_uncalibrated_challenger_passes_when_the_champion_is_further_off(seed):
    y, p = _uniform_world(seed)
    check = _checks(gate(y, 3 * p, 2 * p, triggers=["drift"]))["calibration"]
    assert check.passed
    assert "closer to 1 than the champion's" in check.detail


def _exact_calibration_case(challenger_mean: float, champion_mean: float = 0.25):
    # 1,000 rows, 250 bad: bad rate 0.25 exactly; constant scores give exact means
    y = np.array([1] * 250 + [0] * 750)
    return y, np.full(1000, champion_mean), np.full(1000, challenger_mean)


@pytest.mark.parametrize(
    ("mean", "passes"),
    [
        (0.3125, True),  # ratio exactly 1.25, the upper bound
        (np.nextafter(0.3125, 1.0), False),
        (0.1875, True),  # ratio exactly 0.75, the lower bound
        (np.nextafter(0.1875, 0.0), False),
    ],
)
def test_the_calibration_bounds_are_inclusive(mean, passes):
    settings = GateSettings(calibration=(0.75, 1.25))
    y, champion, challenger = _exact_calibration_case(mean)  # champion exactly calibrated
    check = _checks(gate(y, champion, challenger, settings=settings))["calibration"]
    assert check.passed is passes
    assert check.threshold == [0.75, 1.25]


# --------------------------------------------------------------------------- fairness


def _two_groups(approved_a: int, approved_b: int, n: int = 100) -> np.ndarray:
    """Scores for n rows of group A then n of group B: approved rows 0.01, the rest 0.9."""
    a = [0.01] * approved_a + [0.9] * (n - approved_a)
    b = [0.01] * approved_b + [0.9] * (n - approved_b)
    return np.array(a + b)


def _fairness(champion: np.ndarray, challenger: np.ndarray, **kwargs):
    n = len(champion)
    y = np.tile([0, 1], n // 2)
    protected = pd.DataFrame({"group": ["A"] * (n // 2) + ["B"] * (n // 2)})
    kwargs.setdefault("settings", GateSettings(min_rows=100))
    result = gate(y, champion, challenger, protected=protected, cutoff=0.5, **kwargs)
    return _checks(result)["fairness"]


def test_a_challenger_that_approves_a_group_far_less_fails_fairness():
    check = _fairness(_two_groups(100, 95), _two_groups(100, 50))
    assert not check.passed
    assert "group=B AIR 0.500 (champion 0.950)" in check.detail
    assert check.threshold == 0.8
    (row,) = check.value  # the reference group A is not listed
    assert row["group"] == "B" and row["air"] == 0.5 and row["air_champion"] == 0.95


@pytest.mark.parametrize(
    ("champion_b", "passes"),
    [(50, True), (49, True), (51, False), (100, False)],
)
def test_a_low_air_passes_only_when_not_below_the_champions(champion_b, passes):
    check = _fairness(_two_groups(100, champion_b), _two_groups(100, 50))
    assert check.passed is passes
    assert ("not below the champion's" in check.detail) is passes


@pytest.mark.parametrize(("approved_b", "passes"), [(80, True), (79, False)])
def test_the_air_floor_is_inclusive(approved_b, passes):
    # the champion approves everyone, so only the floor can let the challenger pass
    check = _fairness(_two_groups(100, 100), _two_groups(100, approved_b))
    assert check.passed is passes


def test_a_challenger_that_approves_no_one_fails_fairness():
    # every AIR is undefined (the reference approves no one): the check cannot be computed
    check = _fairness(_two_groups(100, 80), _two_groups(0, 0))
    assert not check.passed
    assert "undefined" in check.detail


def test_an_unused_category_is_not_an_undefined_air():
    # group C has no rows: nothing to test, so it neither fails nor shows in the evidence
    n = 200
    protected = pd.DataFrame(
        {"group": pd.Categorical(["A"] * 100 + ["B"] * 100, categories=["A", "B", "C"])}
    )
    scores = _two_groups(100, 90)
    result = gate(
        np.tile([0, 1], n // 2),
        scores,
        scores,
        settings=GateSettings(min_rows=100),
        protected=protected,
        cutoff=0.5,
    )
    check = _checks(result)["fairness"]
    assert check.passed, check.detail
    assert [row["group"] for row in check.value] == ["B"]


@pytest.mark.parametrize(
    ("protected", "cutoff", "detail"),
    [
        (None, 0.5, "no protected columns: not tested"),
        (pd.DataFrame(index=range(200)), 0.5, "no protected columns: not tested"),
        (
            pd.DataFrame({"group": ["A", "B"] * 100}),
            None,
            "no approval cutoff configured: adverse impact not tested",
        ),
    ],
)
def test_fairness_without_a_cutoff_or_protected_columns_says_it_was_not_tested(
    protected, cutoff, detail
):
    y = np.tile([0, 1], 100)
    scores = _two_groups(100, 0)  # would fail fairness if it were tested
    result = gate(
        y,
        scores[::-1],
        scores,
        settings=GateSettings(min_rows=100),
        protected=protected,
        cutoff=cutoff,
    )
    check = _checks(result)["fairness"]
    assert check.passed and check.value is None
    assert check.detail == detail


# --------------------------------------------------------------------------- score PSI


def test_a_score_psi_over_the_bound_fails(seed):
    y, p = _uniform_world(seed)
    shifted = p**0.2  # the same ranking, a very different distribution
    check = _checks(gate(y, p, shifted, triggers=["drift"]))["score_psi"]
    assert not check.passed
    assert check.value > 0.25
    assert f"score PSI vs champion {check.value:.3f} > 0.25" == check.detail


def test_the_score_psi_bound_is_inclusive(seed):
    y, p = _uniform_world(seed)
    other = np.clip(p + 0.03, 0, 1)
    value = _checks(gate(y, p, other))["score_psi"].value
    assert value > 0
    at = GateSettings(score_psi_max=value)
    below = GateSettings(score_psi_max=float(np.nextafter(value, 0.0)))
    assert _checks(gate(y, p, other, settings=at))["score_psi"].passed
    assert not _checks(gate(y, p, other, settings=below))["score_psi"].passed


def test_score_psi_against_training_scores_passes_when_not_above_the_champions(seed):
    y, p = _uniform_world(seed)
    rng = np.random.default_rng(seed + 7)
    train = fit_bins(rng.uniform(0.02, 0.4, size=2000), n_bins=10)
    refs = (train, train)  # both trained on scores distributed alike
    shifted = p**0.2
    # both drifted as far from their training scores: the challenger is not blocked
    ok = _checks(gate(y, shifted, shifted, score_references=refs))["score_psi"]
    assert ok.passed
    assert ok.value["challenger"] > 0.25
    assert "but not above the champion's" in ok.detail
    # only the challenger drifted: blocked
    bad = _checks(gate(y, p, shifted, score_references=refs))["score_psi"]
    assert not bad.passed
    assert bad.value["challenger"] > bad.value["champion"]
    assert "and above the champion's" in bad.detail


# --------------------------------------------------------------------------- rows


@pytest.mark.parametrize(
    ("n", "bads", "passes"),
    [
        (99, 30, False),  # one row short
        (100, 30, True),
        (100, 0, False),  # one class only
        (100, 100, False),
        (100, 1, False),
        (100, 2, True),
        (100, 98, True),
        (100, 99, False),
    ],
)
def test_the_rows_check_needs_enough_rows_with_both_outcomes(n, bads, passes):
    y = np.array([1] * bads + [0] * (n - bads))
    scores = np.linspace(0.01, 0.5, n)
    result = gate(y, scores, scores, settings=GateSettings(min_rows=100))
    rows = result.checks[0]
    assert rows.name == "rows" and rows.passed is passes
    assert rows.value == {"rows": n, "bads": bads}
    if passes:
        assert [c.name for c in result.checks] == ORDER
    else:
        # nothing else is computed: no comparison, no other check
        assert len(result.checks) == 1 and result.comparison == {}
        assert not result.passed
        assert "need at least 100 with both outcomes" in rows.detail


def test_missing_labels_fail_the_rows_check_instead_of_raising(seed):
    y, p = _uniform_world(seed)
    labels = y.astype(float)
    labels[[3, 10]] = np.nan
    result = gate(labels, p, p, triggers=["drift"])
    assert not result.passed
    assert [c.name for c in result.checks] == ["rows"]
    assert "2 labels missing or not 0/1" in result.checks[0].detail


# --------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize("which", ["champion", "challenger"])
def test_a_nan_score_fails_closed_with_not_computed(seed, which):
    y, p = _uniform_world(seed)
    broken = p.copy()
    broken[5] = np.nan
    champion, challenger = (broken, p) if which == "champion" else (p, broken)
    result = gate(y, champion, challenger, triggers=["drift"])
    assert not result.passed
    auc = _checks(result)["auc"]
    assert not auc.passed and auc.value is None
    assert auc.detail.startswith("auc not computed: ")
    assert f"{which} has 1 NaN score" in auc.detail
    assert "non_inferior" not in _checks(result)
    json.dumps(result.to_dict(), allow_nan=False)  # the evidence is still strict JSON


# --------------------------------------------------------------------------- properties

_score = st.one_of(
    st.floats(0, 1),
    st.sampled_from([0.0, 0.5, 1.0, float("nan")]),
)


@st.composite
def _cases(draw):
    n = draw(st.integers(10, 60))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    champion = draw(st.lists(_score, min_size=n, max_size=n))
    challenger = draw(st.lists(_score, min_size=n, max_size=n))
    groups = draw(st.lists(st.sampled_from(["A", "B", None]), min_size=n, max_size=n))
    protected = draw(st.sampled_from([None, pd.DataFrame({"g": groups})]))
    cutoff = draw(st.sampled_from([None, 0.3, 0.7]))
    triggers = draw(st.lists(st.sampled_from(["drift", "decay", "schedule", "labels"])))
    settings = GateSettings(
        min_rows=10,
        calibration=draw(st.sampled_from([(0.8, 1.25), (0.5, 2.0)])),
        min_air=draw(st.sampled_from([0.5, 0.8])),
        score_psi_max=draw(st.sampled_from([0.1, 10.0])),
    )
    return y, champion, challenger, protected, cutoff, triggers, settings


@settings(max_examples=60, deadline=None)
@given(_cases())
def test_the_gate_passes_only_when_every_check_passes_and_its_evidence_is_json(case):
    y, champion, challenger, protected, cutoff, triggers, gate_settings = case
    result = gate(
        y,
        champion,
        challenger,
        settings=gate_settings,
        triggers=triggers,
        protected=protected,
        cutoff=cutoff,
    )
    assert result.passed == all(c.passed for c in result.checks)
    assert result.checks[0].name == "rows"
    if not result.passed:
        assert result.failed
        assert result.summary.startswith("failed: ")
        for check in result.failed:
            assert check.detail in result.summary
    data = result.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["passed"] is result.passed
    assert [c["name"] for c in data["checks"]] == [c.name for c in result.checks]
