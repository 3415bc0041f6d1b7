"""The approval holdout's measure: explored vs policy approvals, by band of P(bad)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lendml.core.config import ParquetLogSettings
from lendml.errors import DataValidationError
from lendml.monitoring.selection import holdout_bad_rates
from lendml.serving.policy import DecisionPolicy, ExplorePolicy
from lendml.serving.prediction_log import open_prediction_log, read_prediction_log
from lendml.serving.records import PredictionRecord

T0 = datetime(2025, 3, 1, tzinfo=UTC)
POLICY = DecisionPolicy(
    approve_below=0.2,
    decline_from=0.4,
    explore=ExplorePolicy(percent=5.0, max_probability=0.6),
)


@pytest.fixture(scope="module")
def joined(tmp_path_factory) -> pd.DataFrame:
    """20,000 decisions through the real prediction log, joined to calibrated outcomes."""
    rng = np.random.default_rng(42)
    n = 20_000
    p = rng.beta(2, 5, n)
    settings = ParquetLogSettings(rotate_rows=5000)
    root = tmp_path_factory.mktemp("selection")
    with open_prediction_log(settings, root) as plog:
        for i in range(n):
            entity = {"customer_id": i}
            cutoffs = POLICY.decide(float(p[i]))
            explore = POLICY.explores("credit_pd", entity, float(p[i]), cutoffs)
            plog.submit(
                PredictionRecord(
                    request_id=f"r{i}",
                    time=T0 + timedelta(seconds=i),
                    model="credit_pd",
                    version=1,
                    entity=entity,
                    features={},
                    score=float(np.log(p[i] / (1 - p[i]))),
                    probability=float(p[i]),
                    decision="approve" if explore else cutoffs,
                    policy_decision=cutoffs,
                    explore=explore,
                    role="shadow" if i % 50 == 0 else "champion",
                )
            )
        assert plog.flush(timeout=120, drain_spool=True)  # what overflowed the queue too
    log = read_prediction_log(settings, root)
    booked = log["decision"] == "approve"
    bad = (rng.random(len(log)) < log["probability"]).astype(float)
    outcomes = pd.DataFrame(
        {
            "customer_id": log["entity.customer_id"],
            # only booked loans have outcomes; a tenth are not mature yet
            "defaulted": np.where(booked & (rng.random(len(log)) > 0.1), bad, np.nan),
        }
    )
    return log.merge(outcomes, left_on="entity.customer_id", right_on="customer_id")


def test_bad_rates_match_a_naive_count(joined):
    out = holdout_bad_rates(joined, label="defaulted").set_index(["band", "group"])
    live = joined[joined["role"] != "shadow"]
    for group, rows in (
        ("approved", live[live["policy_decision"].eq("approve") & ~live["explore"]]),
        ("explored", live[live["explore"]]),
    ):
        labelled = rows.dropna(subset=["defaulted"])
        row = out.loc[("all", group)]
        assert row["decisions"] == len(rows)
        assert row["labelled"] == len(labelled)
        assert row["bad_rate"] == pytest.approx(labelled["defaulted"].mean())
        assert row["mean_probability"] == pytest.approx(labelled["probability"].mean())
        assert row["bad_rate_low"] < row["bad_rate"] < row["bad_rate_high"]
    band = live[live["explore"] & live["probability"].between(0.35, 0.5, inclusive="left")]
    labelled = band.dropna(subset=["defaulted"])
    row = out.loc[("[0.35, 0.5)", "explored")]
    assert (row["decisions"], row["labelled"]) == (len(band), len(labelled))
    assert row["bad_rate"] == pytest.approx(labelled["defaulted"].mean())


def test_the_holdout_sees_the_bands_the_policy_turns_away(joined):
    out = holdout_bad_rates(joined, label="defaulted")
    explored = out[(out["group"] == "explored") & (out["band"] != "all")]
    approved = out[(out["group"] == "approved") & (out["band"] != "all")]
    assert set(approved["band"]) == {"[0.0, 0.05)", "[0.05, 0.1)", "[0.1, 0.2)"}
    assert set(explored["band"]) == {"[0.2, 0.35)", "[0.35, 0.5)", "[0.5, 0.65)"}
    # the outcomes are calibrated: the truth lies in the interval (in most bands)
    inside = (explored["bad_rate_low"] <= explored["mean_probability"]) & (
        explored["mean_probability"] <= explored["bad_rate_high"]
    )
    assert inside.sum() >= 2
    # ... and the explored applicants are riskier than the approved book
    rates = out[out["band"] == "all"].set_index("group")["bad_rate"]
    assert rates["explored"] > rates["approved"] + 0.15


def test_a_small_explored_group_gets_a_note(joined):
    out = holdout_bad_rates(joined, label="defaulted", min_labels=100)
    explored = out[out["group"] == "explored"].set_index("band")
    # the explored band [0.5, 0.6) is thin (the ceiling cuts it)
    assert "too few to read" in explored.loc["[0.5, 0.65)", "note"]
    assert explored.loc["all", "note"] == ""
    assert (out.loc[out["group"] == "approved", "note"] == "").all()


def test_a_log_without_the_holdout_reports_no_explored_outcomes(joined):
    plain = joined.assign(explore=False, policy_decision=joined["decision"])
    plain = plain[plain["decision"] == "approve"]
    out = holdout_bad_rates(plain, label="defaulted")
    row = out[(out["band"] == "all") & (out["group"] == "explored")].iloc[0]
    assert row["decisions"] == 0 and np.isnan(row["bad_rate"])
    assert "too few to read" in row["note"]


def test_bad_input_is_refused_with_the_problem_named(joined):
    with pytest.raises(DataValidationError, match=r"lacks the column\(s\) \['explore'\]"):
        holdout_bad_rates(joined.drop(columns=["explore"]), label="defaulted")
    with pytest.raises(DataValidationError, match="'outcome'"):
        holdout_bad_rates(joined, label="outcome")
    with pytest.raises(DataValidationError, match="increasing"):
        holdout_bad_rates(joined, label="defaulted", bands=(0, 0.5, 0.4))
    with pytest.raises(DataValidationError, match="1 .bad. or 0"):
        holdout_bad_rates(joined.assign(defaulted=joined["defaulted"] * 2), label="defaulted")
