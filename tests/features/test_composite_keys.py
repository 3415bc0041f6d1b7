"""Entities with several key columns: definitions, errors, training sets, materialization.

The point-in-time values themselves are checked against the brute-force reference in
``test_pit_reference.py`` (hypothesis) and on both engines in
``tests/engines/test_conformance.py``; the online stores in
``tests/stores/test_composite_entity_online.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lendml import (
    Aggregation,
    DataValidationError,
    DefinitionError,
    Entity,
    FeatureService,
    FeatureView,
    Project,
    Source,
)
from lendml.cli.main import app
from lendml.features.definitions import spec_hash
from lendml.features.validate import validate_definitions

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "features.md"

# ------------------------------------------------------------------ definitions


def test_a_tuple_or_list_key_names_several_columns():
    account = Entity("account", key=("bank_id", "account_no"))
    assert account.keys == ("bank_id", "account_no")
    assert account.is_composite
    assert Entity("account", key=["bank_id", "account_no"]) == account
    assert account.to_spec() == {
        "name": "account",
        "key": ["bank_id", "account_no"],
        "description": "",
    }
    # key order is part of the entity: it orders the online key
    assert spec_hash(account.to_spec()) != spec_hash(
        Entity("account", key=("account_no", "bank_id")).to_spec()
    )


def test_a_single_key_is_unchanged():
    customer = Entity("customer", key="CUSTOMER_ID")
    assert customer.key == "CUSTOMER_ID" and customer.keys == ("CUSTOMER_ID",)
    assert not customer.is_composite
    # a tuple of one column is that column: the same entity, spec and version
    assert Entity("customer", key=("CUSTOMER_ID",)) == customer
    assert customer.to_spec() == {"name": "customer", "key": "CUSTOMER_ID", "description": ""}


def test_single_key_catalog_versions_did_not_change():
    """The versions lendml gave the docs' first example before composite keys existed."""
    customer = Entity("customer", key="CUSTOMER_ID")
    spend = FeatureView(
        "spend",
        entity=customer,
        source=Source.parquet("data/transactions.parquet", timestamp="TX_DATETIME"),
        aggregations=[
            Aggregation("TX_AMOUNT", "count", window="1d", name="nb_tx_1d"),
            Aggregation("TX_AMOUNT", "mean", window="7d", name="avg_amount_7d"),
            Aggregation(
                "TX_AMOUNT", "sum", window="30d", where="TX_AMOUNT > 100", name="big_spend_30d"
            ),
        ],
    )
    assert spec_hash(customer.to_spec()) == "fb3d45b2c1bb"
    assert spend.version == "aa91a7c6507a"
    assert FeatureService("fraud_v1", [spend]).version == "e9e5741fe0ac"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ((), r"Entity 'account': key=\(\) names no column; give at least one, e\.g\. key="),
        ([], r"Entity 'account': key=\(\) names no column"),
        (
            ("bank_id", "bank_id"),
            r"Entity 'account': key=\('bank_id', 'bank_id'\) names \['bank_id'\] more than "
            "once; list each key column once",
        ),
        (
            ("bank_id", 7),
            r"Entity 'account': key column 7 in key=\('bank_id', 7\) is a int, not a column "
            "name; give names as strings",
        ),
        (
            ("bank_id", "account no"),
            r"Entity 'account' key name 'account no' is not a valid identifier",
        ),
        ({"bank_id", "account_no"}, r"Entity 'account': key=.* must be a column name or a tuple"),
        (None, r"Entity 'account': key=None must be a column name or a tuple"),
    ],
)
def test_bad_keys_are_refused_when_defined(key, message):
    with pytest.raises(DefinitionError, match=message):
        Entity("account", key=key)


@pytest.fixture
def accounts(tmp_path) -> Path:
    path = tmp_path / "tx.parquet"
    pd.DataFrame(
        {
            "bank_id": ["b1", "b1", "b2"],
            "account_no": [7, 8, 7],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
            "amount": [1.0, 2.0, 3.0],
        }
    ).to_parquet(path)
    return path


def test_key_columns_missing_from_the_source_are_refused_at_apply(accounts):
    account = Entity("account", key=("bank_id", "account_number", "branch"))
    view = FeatureView(
        "balances",
        entity=account,
        source=Source.parquet(str(accounts), timestamp="ts"),
        aggregations=[Aggregation("amount", "sum", window="1d")],
    )
    with pytest.raises(
        DefinitionError,
        match=re.escape(
            "FeatureView 'balances': entity 'account' has key ['bank_id', 'account_number', "
            "'branch'], but its source lacks ['account_number', 'branch']. Existing columns: "
            "bank_id, account_no, ts, amount. Give the entity the source's key column names, "
            "or add the missing columns to the source data."
        ),
    ):
        validate_definitions([account], [view], [], [], str)


def test_the_spine_must_hold_every_key_column(accounts):
    from lendml.engines import create_engine
    from lendml.features.training_set import build_training_set

    view = FeatureView(
        "balances",
        entity=Entity("account", key=("bank_id", "account_no")),
        source=Source.parquet(str(accounts), timestamp="ts"),
        aggregations=[Aggregation("amount", "sum", window="1d")],
    )
    spine = pd.DataFrame({"bank_id": ["b1"], "as_of": pd.to_datetime(["2024-01-02"], utc=True)})
    engine = create_engine("duckdb")
    try:
        with pytest.raises(
            DataValidationError,
            match=re.escape(
                "Spine lacks the entity key column(s) ['account_no'] that feature service 's' "
                "needs (entity 'account' has key ['bank_id', 'account_no']). Columns: "
                "bank_id, as_of. Add every key column to the spine."
            ),
        ):
            build_training_set(engine, FeatureService("s", [view]), spine, resolve_path=str)
    finally:
        engine.close()


# ------------------------------------------------------------------ a project

FEATURES = """
from lendml import Aggregation, Derived, DerivedView, Entity, Feature, FeatureService, FeatureView, Source

account = Entity("account", key=("bank_id", "account_no"))
customer = Entity("customer", key="customer_id")
tx = Source.parquet("data/tx.parquet", timestamp="ts")
limits = Source.parquet("data/limits.parquet", timestamp="set_at")
activity = FeatureView("activity", entity=account, source=tx, aggregations=[
    Aggregation("amount", "count", window="1d", name="n_1d"),
    Aggregation("amount", "sum", window="7d", name="spend_7d"),
    Aggregation("amount", "last", window="7d", name="last_amount"),
])
limit = FeatureView("limit", entity=account, source=limits, ttl="30d",
                    features=[Feature("credit_limit")])
customer_spend = FeatureView("customer_spend", entity=customer, source=tx, aggregations=[
    Aggregation("amount", "sum", window="7d", name="customer_spend_7d"),
])
ratios = DerivedView("ratios", [Derived("utilisation", "spend_7d / credit_limit")])
accounts = FeatureService("accounts", [activity, limit, customer_spend, ratios])
"""
END = "2024-01-20T00:00:00"
BANKS = ["b1", "b2", "b3"]


def make_project(root: Path) -> Project:
    """Accounts of three banks whose account numbers overlap; each account has an owner."""
    p = Project.init(root)
    (root / "features.py").write_text(FEATURES)
    rng = np.random.default_rng(11)
    n = 1500
    bank = rng.choice(BANKS, n)
    account_no = rng.integers(0, 12, n)
    tx = pd.DataFrame(
        {
            "bank_id": bank,
            "account_no": account_no,
            "customer_id": account_no % 5,
            "ts": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 19 * 86400, n) // 3600 * 3600, unit="s"),
            "amount": rng.gamma(2.0, 40.0, n).round(2),
        }
    )
    tx.loc[:20, "bank_id"] = None  # events of no account (the customer view still reads them)
    tx.to_parquet(root / "data" / "tx.parquet")
    pd.DataFrame(
        {
            "bank_id": [b for b in BANKS for _ in range(0, 12, 3)],
            "account_no": [a for _ in BANKS for a in range(0, 12, 3)],
            "set_at": pd.Timestamp("2024-01-02"),
            "credit_limit": rng.integers(500, 5000, 12).astype("float64"),
        }
    ).to_parquet(root / "data" / "limits.parquet")
    p.apply()
    return p


def every_account() -> pd.DataFrame:
    """Every (bank, account) pair, those with no history too, and a null key part."""
    pairs = [(b, a) for b in [*BANKS, "b9"] for a in range(14)]
    keys = pd.DataFrame(pairs, columns=["bank_id", "account_no"])
    keys["customer_id"] = keys["account_no"] % 5
    extra = pd.DataFrame({"bank_id": [None], "account_no": [3], "customer_id": [3]})
    return pd.concat([keys, extra], ignore_index=True)


FEATURE_COLUMNS = [
    "n_1d",
    "spend_7d",
    "last_amount",
    "credit_limit",
    "customer_spend_7d",
    "utilisation",
]


def test_materialized_online_features_equal_the_training_set(tmp_path):
    with make_project(tmp_path / "proj") as p:
        report = p.materialize(start="2024-01-10", end=END)
        keys = every_account()
        offline = p.training_set("accounts", keys.assign(as_of=pd.Timestamp(END, tz="UTC")))
        offline = offline.to_pandas()
        as_columns = {c: keys[c].tolist() for c in keys.columns}
        by_columns = p.online_features("accounts", as_columns, as_of=END)
        by_rows = p.online_features("accounts", keys.to_dict(orient="records"), as_of=END)
        pd.testing.assert_frame_equal(by_columns, by_rows)
        for c in FEATURE_COLUMNS:
            np.testing.assert_allclose(
                by_columns[c].astype("float64").to_numpy(),
                offline[c].astype("float64").to_numpy(),
                rtol=1e-12,
                equal_nan=True,
                err_msg=c,
            )
        # one online row per (bank, account) that had events, not per bank or account number
        active = pd.read_parquet(p.root / "data" / "tx.parquet").dropna(subset=["bank_id"])
        recent = active[active["ts"] > pd.Timestamp("2024-01-10") - pd.Timedelta(days=7)]
        assert report.views["activity"]["entities"] == len(
            recent.drop_duplicates(["bank_id", "account_no"])
        )
        assert report.views["activity"]["online_rows"] == report.views["activity"]["entities"]
        assert report.views["limit"]["online_rows"] == 12
        # accounts with the same number at different banks differ
        spend = by_columns.set_index(["bank_id", "account_no"])["spend_7d"]
        window = active[active["ts"] > pd.Timestamp(END) - pd.Timedelta(days=7)]
        for bank in BANKS:
            mine = window[(window["bank_id"] == bank) & (window["account_no"] == 3)]
            assert spend.loc[(bank, 3)] == pytest.approx(mine["amount"].sum(), rel=1e-12)
        assert spend.loc[("b1", 3)] != spend.loc[("b2", 3)]
        # unseen accounts and a null key part get the no-history values
        unseen = by_columns[by_columns["bank_id"] == "b9"]
        assert (unseen["n_1d"] == 0).all() and (unseen["spend_7d"] == 0).all()
        assert unseen["last_amount"].isna().all() and unseen["credit_limit"].isna().all()
        null_key = by_columns[by_columns["bank_id"].isna()].iloc[0]
        assert null_key["n_1d"] == 0 and pd.isna(null_key["credit_limit"])
        assert null_key["customer_spend_7d"] > 0  # its single-key view still reads it
        # offline partitions hold both key columns
        part = pd.read_parquet(p.offline_root / "activity")
        assert {"bank_id", "account_no", "as_of", "spend_7d"} <= set(part.columns)
        assert not part.duplicated(["bank_id", "account_no", "as_of"]).any()


def test_online_features_name_a_missing_key_column(tmp_path):
    with (
        make_project(tmp_path / "proj") as p,
        pytest.raises(
            DataValidationError,
            match=re.escape(
                "Feature view 'activity' needs entity 'account' key column(s) ['account_no'], "
                "missing in row 0 of the request (its key is ['bank_id', 'account_no'])."
            ),
        ),
    ):
        p.online_features("accounts", {"bank_id": ["b1"], "customer_id": [1]})


def test_cli_training_set_and_online_with_a_composite_key(tmp_path):
    runner = CliRunner()
    root = tmp_path / "proj"
    make_project(root).close()
    spine = every_account().iloc[:5].assign(as_of=pd.Timestamp(END, tz="UTC"))
    spine.to_parquet(tmp_path / "spine.parquet")
    out = tmp_path / "train.parquet"
    args = ["training-set", "accounts", "--spine", str(tmp_path / "spine.parquet")]
    res = runner.invoke(app, [*args, "--out", str(out), "--project", str(root)])
    assert res.exit_code == 0, res.output
    written = pd.read_parquet(out)
    for column in ("bank_id", "account_no"):
        assert written[column].tolist() == spine[column].tolist()
    assert written["n_1d"].notna().all()

    spine.drop(columns="account_no").to_parquet(tmp_path / "bad.parquet")
    bad = ["training-set", "accounts", "--spine", str(tmp_path / "bad.parquet")]
    res = runner.invoke(app, [*bad, "--out", str(out), "--project", str(root)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "lacks the entity key column(s) ['account_no']" in " ".join(res.output.split())

    res = runner.invoke(
        app, ["materialize", "--start", "2024-01-10", "--end", END, "--project", str(root)]
    )
    assert res.exit_code == 0, res.output
    key = "bank_id=b1,account_no=3,customer_id=3"
    res = runner.invoke(app, ["online", "accounts", "--key", key, "--project", str(root)])
    assert res.exit_code == 0, res.output
    with Project(root) as p:
        want = p.online_features(
            "accounts", [{"bank_id": "b1", "account_no": 3, "customer_id": 3}], as_of=END
        )
    assert f'"spend_7d": {want["spend_7d"].item()}' in res.output
    assert '"account_no": 3' in res.output


# ------------------------------------------------------------------ the docs' example


def _doc_blocks(heading: str) -> tuple[list[str], str]:
    """The Python blocks and the first text block of a section of docs/features.md."""
    text = DOC.read_text()
    section = text[text.index(heading) :].split("\n## ", 1)[0]
    python = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (output,) = re.findall(r"```text\n(.*?)```", section, flags=re.S)
    return python, output


def test_docs_composite_key_example_runs(tmp_path, monkeypatch, capsys):
    (definitions, usage), output = _doc_blocks("## 8. Entities with several key columns")
    p = Project.init(tmp_path / "accounts")
    pd.DataFrame(
        {
            "bank_id": ["b1", "b1", "b2", "b2"],
            "account_no": [7, 8, 7, 7],
            "posted_at": pd.to_datetime(
                ["2024-01-01 09:00", "2024-01-01 09:00", "2024-01-02 10:00", "2024-01-03 11:00"]
            ),
            "amount": [100.0, 20.0, 50.0, 25.0],
        }
    ).to_parquet(p.root / "data" / "payments.parquet")
    (p.root / "features.py").write_text(definitions)
    p.apply()
    p.close()
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    exec(compile(usage, str(DOC), "exec"), {"__name__": "docs_features_composite"})
    printed = capsys.readouterr().out
    assert [line.rstrip() for line in printed.splitlines()] == output.rstrip().splitlines()
