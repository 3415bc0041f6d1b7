"""The public datasets: counts and rates as each README states, UTC times, export, CLI."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lendml import ConfigError, DataValidationError, LeakageError, Project
from lendml.cli.main import app
from lendml.datasets import (
    PublicDataset,
    export,
    read_fdh,
    read_german,
    read_lending_club,
    read_public,
    read_taiwan,
    taiwan_statements,
)
from lendml.datasets.public import GERMAN_AS_OF, TAIWAN_AS_OF
from tests.conftest import shared_dataset

UTC_US = pa.timestamp("us", tz="UTC")
LC_LEAKAGE = [
    "collection_recovery_fee",
    "last_pymnt_amnt",
    "last_fico_range_high",
    "last_fico_range_low",
    "debt_settlement_flag",
    "settlement_status",
    "hardship_flag",
    "hardship_type",
    "hardship_status",
    "pymnt_plan",
]


@pytest.fixture(scope="module")
def taiwan() -> PublicDataset:
    return read_taiwan(shared_dataset("taiwan-credit-default"))


@pytest.fixture(scope="module")
def lc_folder():
    return shared_dataset("lendingclub-2012-2014-sample")


@pytest.fixture(scope="module")
def lending_club(lc_folder) -> PublicDataset:
    return read_lending_club(lc_folder, leakage_path=lc_folder)


@pytest.fixture(scope="module")
def german() -> PublicDataset:
    return read_german(shared_dataset("german-credit"))


def _is_utc(series: pd.Series) -> bool:
    return str(series.dtype) == "datetime64[us, UTC]"


# ------------------------------------------------------------------ counts per README


def test_taiwan_matches_readme(taiwan):
    f = taiwan.frame
    assert len(f) == 30_000
    assert int(f[taiwan.label].sum()) == 6_636
    assert round(taiwan.positive_rate * 100, 2) == 22.12
    assert f[taiwan.label].dtype == "int8"
    assert "default.payment.next.month" not in f.columns
    assert f["ID"].is_unique
    assert _is_utc(f[taiwan.timestamp])
    assert (f[taiwan.timestamp] == TAIWAN_AS_OF).all()
    assert taiwan.protected == ("SEX", "AGE", "EDUCATION", "MARRIAGE")
    assert set(taiwan.categorical) <= set(taiwan.protected)
    assert taiwan.post_outcome == ()
    assert not set(taiwan.feature_columns) & {"ID", "SEX", "AGE", taiwan.label, "snapshot_at"}


def test_taiwan_statements_are_six_dated_events_per_client(taiwan):
    long = taiwan_statements(taiwan)
    assert len(long) == 180_000
    assert long.groupby("ID").size().eq(6).all()
    assert _is_utc(long["statement_at"])
    months = sorted(long["statement_at"].unique())
    assert [str(m.date()) for m in months] == [
        "2005-04-30",
        "2005-05-31",
        "2005-06-30",
        "2005-07-31",
        "2005-08-31",
        "2005-09-30",
    ]
    assert max(months) < TAIWAN_AS_OF
    # Client 1 (first row of the README's file): Sep = PAY_0 / BILL_AMT1, Apr = PAY_6 / BILL_AMT6.
    one = long[long["ID"] == 1].set_index(long[long["ID"] == 1]["statement_at"].dt.month)
    row = taiwan.frame.loc[taiwan.frame["ID"] == 1].iloc[0]
    assert one.loc[9, "PAY_STATUS"] == row["PAY_0"] == 2
    assert one.loc[9, "BILL_AMT"] == row["BILL_AMT1"] == 3913.0
    assert one.loc[4, "PAY_STATUS"] == row["PAY_6"] == -2
    assert one.loc[8, "PAY_AMT"] == row["PAY_AMT2"] == 689.0


def test_lending_club_matches_readme(lending_club):
    f = lending_club.frame
    assert len(f) == 59_157
    assert round(lending_club.positive_rate, 3) == 0.168
    by_year = f.groupby("Issue_Year")["bad"].agg(["size", "mean"])
    assert by_year["size"].to_dict() == {2012: 11_252, 2013: 24_188, 2014: 23_717}
    assert by_year["mean"].round(3).to_dict() == {2012: 0.161, 2013: 0.160, 2014: 0.179}
    assert _is_utc(f["issued_at"])
    assert (f["issued_at"].dt.year == f["Issue_Year"]).all()
    assert (f["issued_at"].dt.strftime("%m-%d %H:%M:%S") == "01-01 00:00:00").all()
    assert list(lending_club.post_outcome) == LC_LEAKAGE
    assert set(LC_LEAKAGE) <= set(f.columns)
    assert not set(LC_LEAKAGE) & set(lending_club.feature_columns)
    assert "Issue_Year" not in lending_club.feature_columns
    assert lending_club.protected == ()


def test_lending_club_without_leakage_file(lc_folder):
    clean = read_lending_club(lc_folder / "lc_2012_2014.parquet")
    assert clean.post_outcome == ()
    assert not set(LC_LEAKAGE) & set(clean.frame.columns)
    assert len(clean.frame.columns) == 37  # 36 published columns + issued_at


def test_fdh_matches_readme():
    fdh = read_fdh(shared_dataset("fdh-simulated-transactions"))
    f = fdh.frame
    assert len(f) == 1_754_155
    assert int(f["TX_FRAUD"].sum()) == 14_681
    assert round(fdh.positive_rate * 100, 3) == 0.837
    assert f["CUSTOMER_ID"].nunique() == 4_990
    assert _is_utc(f["TX_DATETIME"])
    assert str(f["TX_DATETIME"].min()) == "2018-04-01 00:00:31+00:00"
    assert str(f["TX_DATETIME"].max()) == "2018-09-30 23:59:57+00:00"
    assert fdh.entity_key == "CUSTOMER_ID" and fdh.row_id == "TRANSACTION_ID"
    assert fdh.post_outcome == ("TX_FRAUD_SCENARIO",)
    assert fdh.feature_columns == ("TX_AMOUNT",)


def test_german_matches_readme(german):
    f = german.frame
    assert len(f) == 1_000
    assert int(f["bad"].sum()) == 300
    assert german.positive_rate == pytest.approx(0.30)
    assert "creditability" not in f.columns
    assert f["applicant_id"].tolist() == list(range(1, 1001))
    assert _is_utc(f["snapshot_at"]) and (f["snapshot_at"] == GERMAN_AS_OF).all()
    assert german.protected == ("personal_status_and_sex", "age_in_years", "foreign_worker")
    assert set(german.categorical) >= {"purpose", "housing", "foreign_worker"}


def test_german_label_encoding_follows_creditability(tmp_path):
    raw = pd.read_csv(shared_dataset("german-credit") / "germancredit.csv.gz")
    ds = read_german(shared_dataset("german-credit"))
    assert (ds.frame["bad"] == (raw["creditability"] == "bad").astype("int8")).all()


# ------------------------------------------------------------------ errors


def test_missing_folder_or_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"Taiwan credit path '.*nowhere' does not exist.*UCI"):
        read_taiwan(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"No Lending Club file in folder .*lc_2012_2014.parquet"):
        read_lending_club(tmp_path)
    with pytest.raises(ConfigError, match=r"Unknown public dataset 'mnist'.*lending_club"):
        read_public("mnist", tmp_path)


def test_wrong_columns_name_the_missing_ones(tmp_path):
    bad = tmp_path / "UCI_Credit_Card.csv"
    pd.DataFrame({"ID": [1], "LIMIT_BAL": [1.0], "SEX": [1]}).to_csv(bad, index=False)
    with pytest.raises(
        DataValidationError, match=r"lacks the column\(s\) \['EDUCATION', 'MARRIAGE'"
    ):
        read_taiwan(tmp_path)
    german = tmp_path / "germancredit.csv"
    pd.DataFrame({"purpose": ["car"]}).to_csv(german, index=False)
    with pytest.raises(DataValidationError, match=r"'status_of_existing_checking_account'"):
        read_german(german)


def test_label_values_other_than_0_1_are_refused(tmp_path, taiwan):
    f = taiwan.frame.head(5).drop(columns="snapshot_at")
    f = f.rename(columns={"default_payment_next_month": "default.payment.next.month"})
    f.loc[2, "default.payment.next.month"] = 2
    f.to_csv(tmp_path / "UCI_Credit_Card.csv", index=False)
    with pytest.raises(DataValidationError, match=r"must be 0 or 1; found \[2\]"):
        read_taiwan(tmp_path)


def test_leakage_file_must_match_the_loans(tmp_path, lc_folder):
    leak = pq.read_table(lc_folder / "lc_2012_2014_post_origination_leakage_cols.parquet")
    pq.write_table(
        leak.slice(0, 100), tmp_path / "lc_2012_2014_post_origination_leakage_cols.parquet"
    )
    with pytest.raises(DataValidationError, match="one row per loan"):
        read_lending_club(lc_folder, leakage_path=tmp_path)


# ------------------------------------------------------------------ export


def test_export_writes_utc_parquet_and_metadata(tmp_path, german):
    out = tmp_path / "german"
    path = export(german, out)
    assert path == out / "german.parquet"
    table = pq.read_table(path)
    assert table.num_rows == 1_000
    assert table.schema.field("snapshot_at").type == UTC_US
    assert table.schema.field("purpose").type == pa.string()
    assert table.schema.metadata is None
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["rows"] == 1_000 and meta["label"] == "bad" and meta["positive_rate"] == 0.3
    assert meta["source"] == {
        "format": "parquet",
        "path": "german.parquet",
        "timestamp": "snapshot_at",
        "post_outcome": [],
    }
    assert meta["protected"] == list(german.protected)
    first = path.read_bytes()
    export(german, out)  # re-running replaces the files with the same bytes
    assert path.read_bytes() == first
    assert sorted(os.listdir(out)) == ["dataset.json", "german.parquet"]  # no temporary files


def test_export_refuses_a_folder_holding_another_dataset(tmp_path, german, taiwan):
    export(german, tmp_path)
    with pytest.raises(ConfigError, match=r"already holds the export of 'german'"):
        export(taiwan, tmp_path)
    with pytest.raises(ConfigError, match="applies to 'taiwan' only"):
        export(german, tmp_path, statements=True)


def test_export_taiwan_with_statements(tmp_path, taiwan):
    export(taiwan, tmp_path, statements=True)
    long = pq.read_table(tmp_path / "taiwan_statements.parquet")
    assert long.num_rows == 180_000
    assert long.schema.field("statement_at").type == UTC_US
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["statements"]["rows"] == 180_000
    assert meta["statements"]["timestamp"] == "statement_at"


# ------------------------------------------------------------------ the docs' projects

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


def _doc_block(heading: str) -> str:
    """The first Python block after ``heading`` in docs/datasets.md."""
    text = DOCS.read_text()
    after = text[text.index(heading) :]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_docs_lc_project_applies_and_refuses_a_leakage_feature(tmp_path, lending_club):
    p = Project.init(tmp_path / "lc")
    export(lending_club, p.root / "data" / "lc")
    features = _doc_block("## A feature project over Lending Club")
    meta = json.loads((p.root / "data" / "lc" / "dataset.json").read_text())
    for column in meta["source"]["post_outcome"]:  # the docs declare every leakage column
        assert repr(column) in features.replace('"', "'")
    (p.root / "features.py").write_text(features)
    with p:
        report = p.apply()  # the Column rules hold on the real data
        assert "feature_services:lc_v1" in report["added"]
        spine = lending_club.frame[["row_id", "issued_at"]].iloc[[0, 1, 40_000]]
        ts = p.training_set("lc_v1", spine.rename(columns={"issued_at": "as_of"})).to_pandas()
        assert (
            ts["int_rate"].tolist() == lending_club.frame["int_rate"].iloc[[0, 1, 40_000]].tolist()
        )
        catalog = p.catalog.path.read_bytes()
        leaky = features.replace('Feature("term")]', 'Feature("term"), Feature("last_pymnt_amnt")]')
        assert leaky != features
        (p.root / "features.py").write_text(leaky)
        with pytest.raises(LeakageError, match=r"'last_pymnt_amnt'.*post_outcome"):
            p.apply()
        assert p.catalog.path.read_bytes() == catalog  # nothing recorded


def test_docs_lc_rules_catch_a_broken_file(tmp_path, lending_club):
    p = Project.init(tmp_path / "lc")
    broken = lending_club.frame.copy()
    broken.loc[[3, 7], "int_rate"] = -1.0
    export(replace(lending_club, frame=broken), p.root / "data" / "lc")
    (p.root / "features.py").write_text(_doc_block("## A feature project over Lending Club"))
    with p, pytest.raises(DataValidationError) as info:
        p.apply()
    assert "column 'int_rate', rule min=0: 2 of 59,157 rows fail; sample bad values: [-1.0]" in str(
        info.value
    )


def test_docs_taiwan_windows_match_the_wide_columns(tmp_path, taiwan):
    p = Project.init(tmp_path / "tw")
    export(taiwan, p.root / "data" / "taiwan", statements=True)
    (p.root / "features.py").write_text(_doc_block("## Windowed features over the Taiwan"))
    with p:
        p.apply()
        wide = taiwan.frame.iloc[[0, 1, 2, 29_999]]
        spine = wide[["ID", "snapshot_at"]].rename(columns={"snapshot_at": "as_of"})
        out = p.training_set("taiwan_v1", spine).to_pandas()
    bills = wide[["BILL_AMT1", "BILL_AMT2", "BILL_AMT3"]]
    assert out["avg_bill_3m"].tolist() == pytest.approx(bills.mean(axis=1).tolist())
    status = wide[["PAY_0", "PAY_2", "PAY_3"]].max(axis=1)
    assert out["worst_status_3m"].tolist() == status.tolist()
    paid = wide[[f"PAY_AMT{i}" for i in range(1, 7)]].sum(axis=1)
    assert out["paid_6m"].tolist() == pytest.approx(paid.tolist())


# ------------------------------------------------------------------ CLI


def test_cli_import_writes_the_files(tmp_path):
    folder = shared_dataset("taiwan-credit-default")
    out = tmp_path / "taiwan"
    res = CliRunner().invoke(
        app,
        ["datasets", "import", "taiwan", "--path", str(folder), "--out", str(out), "--statements"],
    )
    assert res.exit_code == 0, res.output
    assert "30,000 rows" in res.output and "22.12%" in res.output
    assert pq.read_metadata(out / "taiwan.parquet").num_rows == 30_000
    assert pq.read_metadata(out / "taiwan_statements.parquet").num_rows == 180_000
    assert json.loads((out / "dataset.json").read_text())["timestamp"] == "snapshot_at"


def test_cli_import_reports_a_bad_path_without_traceback(tmp_path):
    res = CliRunner().invoke(
        app, ["datasets", "import", "german", "--path", str(tmp_path / "x"), "--out", str(tmp_path)]
    )
    assert res.exit_code == 2
    assert "ConfigError" in res.output and "does not exist" in res.output
    assert "Traceback" not in res.output
