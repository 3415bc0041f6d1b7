"""``lendml simulate`` end to end on a small world: every month served, every pass recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from lendml.cli.main import app
from lendml.pipelines import loop_history
from lendml.project import Project


def test_simulate_replays_every_month_through_serving_and_the_loop(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(out),
            "--borrowers",
            "4000",
            "--months",
            "22",
            "--shift-month",
            "13",
            "--first-champion-month",
            "11",
            "--json",
        ],
    )
    assert res.exit_code in (0, 1), res.output  # 1: an outcome did not hold at this size
    data = json.loads(res.output[res.output.index("{") :])
    passes = data["passes"]
    assert passes[0]["status"] == "promoted"  # the first champion
    monthly = passes[1:]
    assert [p["as_of"][:7] for p in monthly] == [
        f"{2023 + m // 12}-{m % 12 + 1:02d}" for m in range(12, 23)
    ]
    assert {p["status"] for p in monthly} <= {"no_trigger", "rejected", "promoted"}
    assert all(p["served"] > 0 for p in monthly)
    champions = [p["champion"] for p in passes]
    assert champions == sorted(champions)  # versions only move forward here
    # every monthly decision is in the prediction log, at its application time
    with Project(out) as p:
        from lendml.serving.prediction_log import read_prediction_log

        log = read_prediction_log(p.config.prediction_log, p.root)
        assert len(log) == sum(x["served"] for x in monthly)
        assert log["time"].min() >= pd.Timestamp("2023-11-01", tz="UTC")
        ends = [e for e in loop_history(p) if e["step"] == "end"]
        assert len(ends) == len(passes)
        # with selection on, the loop never saw the outcome of a declined application
        spine = pd.read_parquet(out / "data" / "spine.parquet")
        spine["as_of"] = pd.to_datetime(spine["as_of"], utc=True)
        served = log.assign(borrower_id=log["entity.borrower_id"].astype(int)).merge(
            spine, left_on=["borrower_id", "time"], right_on=["borrower_id", "as_of"]
        )
        assert len(served) == len(log)
        declined = served[served["decision"] != "approve"]
        assert len(declined) > 0 and declined["defaulted"].isna().all()
        assert served.loc[served["decision"] == "approve", "defaulted"].notna().all()
    report = out / "reports" / "simulation" / "report.html"
    text = report.read_text()
    assert text.count("<svg") == 3 and "regime shift" in text
    outcomes = data["outcomes"]
    assert set(outcomes) == {"drift_detected", "promoted_after_shift", "oracle", "quiet_periods"}
    # at this size the oracle has a few hundred post-shift rows (it may learn nothing: 0.5)
    assert 0.5 <= outcomes["oracle"]["auc"]["oracle"] <= 1.0
    assert outcomes["oracle"]["rows"] > 0 and outcomes["drift_detected"]["windows_after_shift"]
    assert res.exit_code == (0 if all(o["passed"] for o in outcomes.values()) else 1)


def test_simulate_refuses_settings_that_cannot_show_the_outcomes(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["simulate", "--out", str(tmp_path / "s"), "--months", "20", "--shift-month", "14"]
    )
    assert res.exit_code == 2 and "mature post-shift outcomes" in res.output
    assert not (tmp_path / "s").exists()


def test_simulate_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "x").read_text() == "keep me"
