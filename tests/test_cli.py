"""The CLI end to end: init → apply → features list/show → training-set, and its errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from lendml import Project
from lendml.cli.main import app

runner = CliRunner()


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "fraud"
    res = runner.invoke(app, ["init", str(root)])
    assert res.exit_code == 0, res.output
    tx = pd.DataFrame(
        {
            "TRANSACTION_ID": [1, 2, 3, 4],
            "CUSTOMER_ID": [7, 7, 7, 8],
            "TX_DATETIME": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-01 12:00", "2024-01-05 09:00", "2024-01-02 00:00"]
            ),
            "TX_AMOUNT": [50.0, 150.0, 200.0, 10.0],
        }
    )
    tx.to_parquet(root / "data" / "transactions.parquet")
    return root


def test_init_refuses_non_empty_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("hi")
    res = runner.invoke(app, ["init", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "not an empty folder" in res.output
    assert "Traceback" not in res.output


def test_apply_list_show_training_set(project, tmp_path):
    res = runner.invoke(app, ["apply", "--project", str(project)])
    assert res.exit_code == 0, res.output
    assert "3 added" in res.output  # entity, view, service
    res = runner.invoke(app, ["apply", "--project", str(project)])
    assert "0 added, 0 changed, 3 unchanged" in res.output

    res = runner.invoke(app, ["features", "list", "--project", str(project)])
    assert res.exit_code == 0 and "spend" in res.output and "fraud_v1" in res.output
    res = runner.invoke(app, ["features", "show", "spend", "--project", str(project)])
    assert res.exit_code == 0
    shown = json.loads(res.output)
    assert shown["name"] == "spend" and len(shown["aggregations"]) == 3

    spine = pd.DataFrame(
        {
            "CUSTOMER_ID": [7, 7, 8],
            "as_of": pd.to_datetime(["2024-01-01 12:00", "2024-01-06 00:00", "2024-01-01 00:00"]),
        }
    )
    spine_path = tmp_path / "spine.parquet"
    spine.to_parquet(spine_path)
    out = tmp_path / "train.parquet"
    res = runner.invoke(
        app,
        [
            "training-set",
            "fraud_v1",
            "--spine",
            str(spine_path),
            "--out",
            str(out),
            "--project",
            str(project),
        ],
    )
    assert res.exit_code == 0, res.output
    ts = pd.read_parquet(out)
    assert list(ts.columns) == [
        "CUSTOMER_ID",
        "as_of",
        "nb_tx_1d",
        "avg_amount_7d",
        "big_spend_30d",
    ]
    assert ts["nb_tx_1d"].tolist() == [2, 1, 0]
    assert ts["avg_amount_7d"].tolist()[:2] == [100.0, pytest.approx((50 + 150 + 200) / 3)]
    assert pd.isna(ts["avg_amount_7d"].iloc[2])
    assert ts["big_spend_30d"].tolist() == [150.0, 350.0, 0.0]


def test_training_set_requires_apply_after_edit(project, tmp_path):
    assert runner.invoke(app, ["apply", "-p", str(project)]).exit_code == 0
    f = project / "features.py"
    f.write_text(f.read_text().replace('window="1d"', 'window="2d"'))
    spine = tmp_path / "s.parquet"
    pd.DataFrame({"CUSTOMER_ID": [7], "as_of": pd.to_datetime(["2024-01-02"])}).to_parquet(spine)
    res = runner.invoke(
        app,
        [
            "training-set",
            "fraud_v1",
            "--spine",
            str(spine),
            "--out",
            str(tmp_path / "o.parquet"),
            "-p",
            str(project),
        ],
    )
    assert res.exit_code == 2
    assert "changed since the last `lendml apply`" in res.output


def test_apply_reports_bad_definition_without_traceback(project):
    f = project / "features.py"
    f.write_text(f.read_text().replace('"TX_AMOUNT", "mean"', '"TX_AMT", "mean"'))
    res = runner.invoke(app, ["apply", "-p", str(project)])
    assert res.exit_code == 2
    assert "'TX_AMT' is not a column of its source" in res.output
    assert "Traceback" not in res.output
    # nothing half-written: the catalog was not created
    assert not (project / "data" / "catalog.json").exists()


def test_no_project_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["apply", "-p", str(tmp_path)])
    assert res.exit_code == 2 and "No lendml.yaml" in res.output


def test_bad_yaml_names_the_key(project):
    (project / "lendml.yaml").write_text("version: 1\nengine:\n  type: oracle\n")
    with pytest.raises(Exception, match="engine"):
        Project(project)
