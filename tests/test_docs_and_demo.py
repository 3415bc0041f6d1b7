"""The docs' examples and the demo run as written."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_example_runs(tmp_path):
    mod = runpy.run_path(str(ROOT / "docs" / "examples" / "quickstart.py"))
    train = mod["main"](tmp_path)
    assert list(train.columns) == [
        "CUSTOMER_ID",
        "as_of",
        "nb_tx_1d",
        "avg_amount_7d",
        "big_spend_30d",
    ]
    assert len(train) == 3
    assert (train["nb_tx_1d"] >= 0).all()


def test_docs_first_example_is_the_init_template():
    doc = (ROOT / "docs" / "features.md").read_text()
    from lendml.project import EXAMPLE_FEATURES

    for line in (
        'customer = Entity("customer", key="CUSTOMER_ID")',
        'Aggregation("TX_AMOUNT", "sum", window="30d", where="TX_AMOUNT > 100", name="big_spend_30d"),',
        'fraud_v1 = FeatureService("fraud_v1", [spend])',
    ):
        assert line in doc and line in EXAMPLE_FEATURES


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    exe = Path(sys.executable).parent / "lendml"
    res = subprocess.run(
        [
            str(exe),
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--borrowers",
            "600",
            "--loop-borrowers",
            "4000",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for step in (*(f"{i}/12" for i in range(1, 13)), "done"):
        assert step in res.stdout
    assert "served credit_pd@champion" in res.stdout and "200 applicants" in res.stdout
    assert (tmp_path / "demo" / "data" / "training_set.parquet").exists()
    assert (tmp_path / "demo" / "reports" / "credit_pd" / "report.html").exists()
    sim = tmp_path / "demo" / "simulation"
    assert "<svg" in (sim / "reports" / "simulation" / "report.html").read_text()
    assert "loop passes" in res.stdout and "where everything is" in res.stdout
    from lendml import Project

    with Project(tmp_path / "demo") as p:
        champion = p.registry.resolve("credit_pd@champion")
        assert champion.version == 1
        assert [e.reason for e in p.registry.history("credit_pd")] == ["demo: first model"]
        from lendml.serving.prediction_log import read_prediction_log

        served = read_prediction_log(p.config.prediction_log, p.root)
        assert len(served) == 200 and set(served["version"]) == {1}
        assert set(served["decision"]) <= {"approve", "refer", "decline"}
        declined = served[served["decision"] == "decline"]
        assert all(len(r) >= 1 for r in declined["reasons"])  # declines always carry reasons


def test_synth_cli_refuses_bad_arguments(tmp_path):
    from typer.testing import CliRunner

    from lendml.cli.main import app

    res = CliRunner().invoke(
        app, ["datasets", "synth", "--borrowers", "0", "--out", str(tmp_path / "w")]
    )
    assert res.exit_code != 0
    assert "borrowers" in res.output
