"""Declared column rules enforced on source data: each rule, NaN vs null, time, scale."""

from __future__ import annotations

import json
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pandera.ibis as pandera_ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lendml import Column, DataValidationError, DefinitionError, Project, Source
from lendml.engines import create_engine
from lendml.errors import EngineError
from lendml.features import data_checks
from lendml.features.data_checks import (
    MAX_SAMPLES,
    check_source_data,
    declared_rules,
    pandera_schema,
    validate_source_data,
)
from lendml.features.validate import validate_source_rules

UTC_US = pa.timestamp("us", tz="UTC")


@pytest.fixture(scope="module")
def engine():
    e = create_engine("duckdb", threads=1)
    yield e
    e.close()


def write(tmp_path: Path, columns: dict[str, pa.Array], name: str = "src.parquet", **kw) -> str:
    path = tmp_path / name
    n = len(next(iter(columns.values())))
    cols = {"ts": pa.array(np.arange(n) * 86_400_000_000, UTC_US), **columns}
    pq.write_table(pa.table(cols), path, **kw)
    return str(path)


def source(path: str, *columns: Column, **kw) -> Source:
    return Source.parquet(path, timestamp="ts", name=kw.pop("name", "tx"), columns=columns, **kw)


def violations(engine, src: Source):
    return check_source_data(engine, src, str)


def message(engine, src: Source) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_source_data(engine, [src], str)
    return str(info.value)


# ------------------------------------------------------------------ each rule


def test_dtype_families(engine, tmp_path):
    path = write(
        tmp_path,
        {
            "i32": pa.array([1, 2, 3], pa.int32()),
            "f": pa.array([0.5, 1.5, 2.5]),
            "s": pa.array(["a", "b", "c"]),
            "b": pa.array([True, False, True]),
            "naive": pa.array([0, 1, 2], pa.timestamp("ms")),
        },
    )
    ok = source(
        path,
        Column("i32", dtype="int"),
        Column("f", dtype="number"),
        Column("s", dtype="string"),
        Column("b", dtype="bool"),
        Column("naive", dtype="timestamp"),
        Column("ts", dtype="timestamp"),
    )
    assert violations(engine, ok) == []
    bad = source(path, Column("f", dtype="int"), Column("s", dtype="number"))
    text = message(engine, bad)
    assert "Source 'tx'" in text and repr(path) in text
    assert (
        "column 'f', rule dtype='int': 3 of 3 rows fail; sample bad values: [0.5, 1.5, 2.5]" in text
    )
    assert (
        "column 's', rule dtype='number': 3 of 3 rows fail; sample bad values: ['a', 'b', 'c']"
        in text
    )


def test_nullable(engine, tmp_path):
    path = write(
        tmp_path, {"k": pa.array([1, None, 3, None], pa.int64()), "v": pa.array([1, 2, 3, 4])}
    )
    assert violations(engine, source(path, Column("v", nullable=False))) == []
    text = message(engine, source(path, Column("k", nullable=False)))
    assert "column 'k', rule nullable=False: 2 of 4 rows fail; sample bad values: [None]" in text


def test_min_max(engine, tmp_path):
    path = write(tmp_path, {"amount": pa.array([-5.0, -1.0, 0.0, 10.0, 250.0, 90.0, -5.0])})
    assert violations(engine, source(path, Column("amount", min=-5, max=250))) == []
    text = message(engine, source(path, Column("amount", min=0, max=100)))
    assert "column 'amount', rule min=0: 3 of 7 rows fail; sample bad values: [-5.0, -1.0]" in text
    assert "column 'amount', rule max=100: 1 of 7 rows fail; sample bad values: [250.0]" in text


def test_isin_lists_most_frequent_bad_values_first(engine, tmp_path):
    values = ["web"] * 5 + ["fax"] + ["tel"] * 3 + [None] + list("abcdef")
    path = write(tmp_path, {"channel": pa.array(values)})
    allowed = ("web", "fax", "tel", *"abcdef")
    assert violations(engine, source(path, Column("channel", isin=allowed))) == []
    text = message(engine, source(path, Column("channel", isin=("web",))))
    assert (
        "column 'channel', rule isin=('web',): 10 of 16 rows fail; "
        "sample bad values: ['tel', 'a', 'b', 'c', 'd']" in text
    )


def test_unique_and_unique_key(engine, tmp_path):
    path = write(
        tmp_path,
        {
            "tx_id": pa.array([1, 2, 3, 3, 4, 4, 4, None, None], pa.int64()),
            "cid": pa.array([1, 1, 1, 2, 2, 2, 2, 3, 3], pa.int64()),
            "seq": pa.array([1, 2, 3, 1, 1, 2, 3, 1, 1], pa.int64()),
        },
    )
    # nulls are missing values, not duplicates of each other
    assert violations(engine, source(path, unique_key=["cid", "seq", "tx_id"])) == []
    text = message(engine, source(path, Column("tx_id", unique=True), unique_key=["cid", "seq"]))
    assert "column 'tx_id', rule unique: 5 of 9 rows fail; sample bad values: [4, 3]" in text
    assert (
        "columns ('cid', 'seq'), rule unique_key: 4 of 9 rows fail; "
        "sample bad values: [(2, 1), (3, 1)]" in text
    )


def test_timestamp_bounds_on_aware_and_naive_columns(engine, tmp_path):
    times = ["2024-01-01", "2024-01-15", "2024-03-01"]
    path = write(
        tmp_path,
        {
            "aware": pa.array([pd.Timestamp(t, tz="UTC") for t in times], UTC_US),
            "naive": pa.array([pd.Timestamp(t) for t in times], pa.timestamp("us")),
        },
    )
    ok = source(
        path,
        Column("aware", dtype="timestamp", min="2024-01-01", max="2024-03-01T00:00:00Z"),
        Column("naive", min=pd.Timestamp("2024-01-01"), max="2024-03-01"),
    )
    assert violations(engine, ok) == []
    # a naive bound means UTC; an aware one is converted to UTC
    bad = source(
        path,
        Column("aware", max="2024-02-01T01:00:00+01:00"),
        Column("naive", min="2024-01-10"),
    )
    text = message(engine, bad)
    assert (
        "column 'aware', rule max='2024-02-01T00:00:00+00:00': 1 of 3 rows fail; "
        "sample bad values: ['2024-03-01T00:00:00+00:00']" in text
    )
    assert "column 'naive', rule min='2024-01-10T00:00:00+00:00': 1 of 3 rows fail" in text
    assert "sample bad values: ['2024-01-01T00:00:00']" in text


def test_event_time_column_nullable(engine, tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"ts": pa.array([0, None, 2], UTC_US), "x": [1, 2, 3]}), path)
    src = Source.parquet(str(path), timestamp="ts", columns=[Column("ts", nullable=False)])
    text = message(engine, src)
    assert f"Source {str(path)!r} breaks" in text
    assert "column 'ts', rule nullable=False: 1 of 3 rows fail; sample bad values: [None]" in text


# ------------------------------------------------------------------ NaN vs null


def test_nan_is_missing_for_nullable_and_ignored_by_value_rules(engine, tmp_path):
    # Written by pyarrow: NaN stays NaN (not null), and the file's min/max statistics
    # leave it out, which DuckDB would otherwise trust (see data_checks.read_source).
    values = np.linspace(1.0, 50.0, 200_000)
    values[[7, 150_000]] = np.nan
    arr = pa.array(values, from_pandas=False)
    arr = pa.concat_arrays([arr, pa.array([None], pa.float64())])
    assert arr.null_count == 1 and int(np.isnan(values).sum()) == 2
    path = write(tmp_path, {"x": arr}, row_group_size=50_000)
    assert violations(engine, source(path, Column("x", min=1, max=50, unique=True))) == []
    small = write(
        tmp_path, {"y": pa.array([1.0, float("nan"), None, 2.0], from_pandas=False)}, "s.parquet"
    )
    assert violations(engine, source(small, Column("y", isin=(1, 2), max=2, unique=True))) == []
    text = message(engine, source(path, Column("x", nullable=False)))
    assert "rule nullable=False: 3 of 200,001 rows fail; sample bad values: [None, nan]" in text


def test_nan_in_an_int_like_float_column_fails_nullable_without_nulls(engine, tmp_path):
    path = write(tmp_path, {"x": pa.array([1.0, float("nan"), 3.0], from_pandas=False)})
    (v,) = violations(engine, source(path, Column("x", nullable=False)))
    assert v.failing_rows == 1 and len(v.samples) == 1 and np.isnan(v.samples[0])


def test_empty_source_passes_every_rule(engine, tmp_path):
    path = write(tmp_path, {"x": pa.array([], pa.float64())})
    src = source(path, Column("x", nullable=False, min=0, unique=True), unique_key=["ts"])
    assert violations(engine, src) == []


# ------------------------------------------------------------------ definitions


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "string", "min": 0}, r"min=0 does not fit dtype 'string'"),
        ({"dtype": "int", "max": "2024-01-01"}, r"max='2024-01-01' does not fit dtype 'int'"),
        ({"min": 5, "max": 1}, r"min=5 is greater than max=1"),
        ({"min": "2024-02-01", "max": "2024-01-01"}, "is greater than max"),
        ({"min": 0, "max": "2024-01-01"}, "must both be numbers or both timestamps"),
        ({"min": float("nan")}, "NaN is a missing value"),
        ({"min": True}, "is a bool"),
        ({"min": "soon"}, r"Invalid Column 'x' min 'soon'"),
        ({"isin": ("a", 1)}, "mixes num and str values"),
        ({"isin": ()}, "allows no value"),
        ({"isin": ("a", None)}, "missing values are allowed or refused by nullable="),
        ({"isin": "abc"}, "must be a list or tuple"),
        ({"dtype": "int", "isin": ("1", "2")}, "does not fit dtype 'int'"),
        ({"dtype": "decimal"}, "is not one of int, float"),
        ({"nullable": "no"}, "must be True or False"),
    ],
)
def test_bad_column_rules_are_refused(kwargs, match):
    with pytest.raises(DefinitionError, match=match):
        Column("x", **kwargs)


def test_source_refuses_duplicate_columns_and_splits_no_key():
    with pytest.raises(DefinitionError, match=r"columns \['x'\] are declared more than once"):
        Source.parquet("a.parquet", timestamp="ts", columns=[Column("x"), Column("x")])
    assert Source.parquet("a.parquet", timestamp="ts", unique_key="tx_id").unique_key == ("tx_id",)
    with pytest.raises(DefinitionError, match="is not a Column"):
        Source.parquet("a.parquet", timestamp="ts", columns=["x"])


def test_rules_must_fit_the_source_schema(tmp_path):
    schema = pa.schema([("ts", UTC_US), ("amount", pa.float64()), ("channel", pa.string())])
    with pytest.raises(DefinitionError, match=r"column 'amt', which its data lacks.*ts, amount"):
        validate_source_rules(source("x", Column("amt", min=0)), schema)
    with pytest.raises(
        DefinitionError, match=r"'channel' min=0 cannot apply to a column of type string"
    ):
        validate_source_rules(source("x", Column("channel", min=0)), schema)
    with pytest.raises(DefinitionError, match=r"isin=\('a',\) cannot apply"):
        validate_source_rules(source("x", Column("amount", isin=("a",))), schema)
    validate_source_rules(
        source("x", Column("ts", isin=("2024-01-01",)), unique_key=["ts"]), schema
    )
    with pytest.raises(DefinitionError, match=r"Column 'ts' isin value 'monday'"):
        validate_source_rules(source("x", Column("ts", isin=("monday",))), schema)


def test_declared_rules_and_pandera_schema():
    src = source(
        "x.parquet",
        Column("amount", dtype="float", nullable=False, min=0, max=10),
        Column("channel", isin=("a", "b"), unique=True),
        unique_key=["cid", "ts"],
    )
    assert [r.label for r in declared_rules(src)] == [
        "dtype='float'",
        "nullable=False",
        "min=0",
        "max=10",
        "isin=('a', 'b')",
        "unique",
        "unique_key",
    ]
    schema = pandera_schema(src)
    assert isinstance(schema, pandera_ibis.DataFrameSchema)
    assert sorted(schema.columns) == ["amount", "channel"]
    assert [c.name for c in schema.columns["amount"].checks] == [
        "1:nullable=False",
        "2:min=0",
        "3:max=10",
    ]
    assert [c.name for c in schema.checks] == ["6:unique_key"]


def test_pandera_configuration_cannot_switch_checks_off(engine, tmp_path, monkeypatch):
    from pandera.config import CONFIG, ValidationDepth

    monkeypatch.setattr(CONFIG, "validation_enabled", False)
    monkeypatch.setattr(CONFIG, "validation_depth", ValidationDepth.SCHEMA_ONLY)
    path = write(tmp_path, {"x": pa.array([-1.0, 2.0])})
    (v,) = violations(engine, source(path, Column("x", min=0)))
    assert v.failing_rows == 1


def test_a_check_that_cannot_run_is_an_engine_error(engine, tmp_path):
    # A timestamp bound on a number column is refused at apply; here it reaches the engine.
    path = write(tmp_path, {"x": pa.array([1.0, 2.0])})
    with pytest.raises(EngineError, match=r"Source 'tx': the data check .*min=.* could not run"):
        violations(engine, source(path, Column("x", min="2024-01-01")))


def test_csv_sources_and_several_sources_in_one_message(engine, tmp_path):
    csv = tmp_path / "a.csv"
    pd.DataFrame({"ts": ["2024-01-01T00:00:00Z"] * 3, "grade": ["A", "B", "Z"]}).to_csv(
        csv, index=False
    )
    a = Source.csv(
        str(csv), timestamp="ts", name="apps", columns=[Column("grade", isin=("A", "B"))]
    )
    b = source(write(tmp_path, {"x": pa.array([-1.0, 2.0])}), Column("x", min=0), name="tx")
    with pytest.raises(DataValidationError) as info:
        validate_source_data(engine, [a, b, b], str)
    text = str(info.value)
    assert (
        "Source 'apps'" in text
        and "rule isin=('A', 'B'): 1 of 3 rows fail; sample bad values: ['Z']" in text
    )
    assert "Source 'tx'" in text and "rule min=0: 1 of 2 rows fail" in text
    assert text.count("Source 'tx'") == 1  # equal sources are checked once
    assert "validate_data=False" in text
    assert (
        info.value.context["source"] == "apps" and info.value.context["rule"] == "isin=('A', 'B')"
    )
    assert len(info.value.context["violations"]) == 2


# ------------------------------------------------------------------ a large file


def test_a_million_rows_are_checked_on_the_engine_not_in_pandas(engine, tmp_path, monkeypatch):
    n = 1_000_000
    rng = np.random.default_rng(0)
    amount = rng.gamma(2.0, 50.0, n)
    amount[[10, 500_000, 999_999]] = [-1.0, -2.0, -3.0]
    channel = np.array(["web", "app", "pos"])[rng.integers(0, 3, n)].astype(object)
    channel[123_456] = "fax"
    path = write(
        tmp_path,
        {
            "tx_id": pa.array(np.arange(n)),
            "amount": pa.array(amount),
            "channel": pa.array(channel, pa.string()),
        },
        name="big.parquet",
    )
    rules = (
        Column("tx_id", dtype="int", nullable=False, unique=True),
        Column("amount", dtype="float", nullable=False, max=1e6),
        Column("channel", nullable=False, isin=("web", "app", "pos", "fax")),
    )

    materialized: list[int] = []
    backend = type(engine.con)
    for method in ("execute", "to_pyarrow"):
        real = getattr(backend, method)

        def spy(self, expr, *a, _real=real, **k):
            out = _real(self, expr, *a, **k)
            materialized.append(len(out) if hasattr(out, "__len__") else 1)
            return out

        monkeypatch.setattr(backend, method, spy)
    made_frames: list[int] = []
    real_init = pd.DataFrame.__init__

    def frame_spy(self, *a, **k):
        real_init(self, *a, **k)
        made_frames.append(len(self))

    monkeypatch.setattr(pd.DataFrame, "__init__", frame_spy)

    def no_full_read(*a, **k):
        raise AssertionError("the source was read outside the engine")

    monkeypatch.setattr(pq, "read_table", no_full_read)
    monkeypatch.setattr(pd, "read_parquet", no_full_read)

    assert violations(engine, source(path, *rules)) == []
    assert materialized and max(materialized) <= 1  # one aggregate value per query
    dirty = source(
        path,
        Column("amount", min=0),
        Column("channel", isin=("web", "app", "pos")),
        Column("tx_id", unique=True),
    )
    found = violations(engine, dirty)
    assert [(v.rule.label, v.failing_rows) for v in found] == [
        ("min=0", 3),
        ("isin=('web', 'app', 'pos')", 1),
    ]
    assert found[0].samples == (-3.0, -2.0, -1.0) and found[1].samples == ("fax",)
    assert max(materialized) <= MAX_SAMPLES
    assert max(made_frames, default=0) <= MAX_SAMPLES


def test_duckdb_parquet_reads_see_nan(engine, tmp_path):
    path = write(tmp_path, {"x": pa.array([1.0, float("nan"), 2.0], from_pandas=False)})
    t = data_checks.read_source(engine, source(path), path)
    assert engine.to_arrow(t.aggregate(n=t.count(where=t.x.isnan())))["n"][0].as_py() == 1
    assert isinstance(t, ibis.Table)


# ------------------------------------------------------------------ apply and materialize


FEATURES = """
from lendml import Aggregation, Column, Entity, FeatureService, FeatureView, Source
customer = Entity("customer", key="CUSTOMER_ID")
tx = Source.parquet(
    "data/tx.parquet", timestamp="TX_DATETIME", name="tx", unique_key=["TX_ID"],
    columns=[Column("TX_AMOUNT", dtype="number", nullable=False, min=0),
             Column("CHANNEL", isin=("web", "app"))],
)
spend = FeatureView("spend", entity=customer, source=tx, aggregations=[
    Aggregation("TX_AMOUNT", "sum", window="7d", name="spend_7d"),
])
svc = FeatureService("svc", [spend])
"""


def tx_frame(bad: bool = False) -> pd.DataFrame:
    n = 200
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "TX_ID": np.arange(n),
            "CUSTOMER_ID": rng.integers(0, 10, n),
            "TX_DATETIME": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
            "TX_AMOUNT": rng.gamma(2.0, 10.0, n).round(2),
            "CHANNEL": rng.choice(["web", "app"], n),
        }
    )
    if bad:
        df.loc[5, "TX_AMOUNT"] = -7.5
        df.loc[9, "CHANNEL"] = "fax"
    return df


@pytest.fixture
def project(tmp_path):
    p = Project.init(tmp_path / "proj")
    (p.root / "features.py").write_text(FEATURES)
    yield p
    p.close()


def test_apply_refuses_bad_data_and_writes_nothing(project):
    tx_frame(bad=True).to_parquet(project.root / "data" / "tx.parquet")
    with pytest.raises(DataValidationError) as info:
        project.apply()
    text = str(info.value)
    assert "Source 'tx' ('data/tx.parquet')" in text
    assert "column 'TX_AMOUNT', rule min=0: 1 of 200 rows fail; sample bad values: [-7.5]" in text
    assert (
        "column 'CHANNEL', rule isin=('web', 'app'): 1 of 200 rows fail; sample bad values: ['fax']"
        in text
    )
    assert not project.catalog.path.exists()
    report = project.apply(validate_data=False)
    assert "feature_views:spend" in report["added"]


def test_apply_accepts_clean_data(project):
    tx_frame().to_parquet(project.root / "data" / "tx.parquet")
    assert "feature_services:svc" in project.apply()["added"]


def test_materialize_checks_the_data_before_writing(project):
    path = project.root / "data" / "tx.parquet"
    tx_frame().to_parquet(path)
    project.apply()
    bad = tx_frame()
    bad.loc[3, "TX_ID"] = bad.loc[4, "TX_ID"]  # a duplicated key arrives after apply
    bad.to_parquet(path)
    with pytest.raises(
        DataValidationError, match=r"columns \('TX_ID',\)|column 'TX_ID', rule unique_key: 2 of 200"
    ):
        project.materialize(start="2024-01-05", end="2024-01-10")
    offline = project.offline_root
    assert not offline.exists() or not any(offline.rglob("*.parquet"))
    assert project.materialization_state() == {}
    report = project.materialize(start="2024-01-05", end="2024-01-10", validate_data=False)
    assert report.total_offline_rows() > 0
    state = json.loads((offline / "_materialized.json").read_text())
    assert "spend" in state


# ------------------------------------------------------------------ the docs' example


def test_docs_example_message(engine, tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    section = doc[doc.index("### Data rules on sources") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    shown = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    n = 1_000
    amount = np.linspace(1.0, 500.0, n)
    amount[[10, 20, 30]] = [-1.0, -2.0, -3.0]
    channel = np.array(["web", "app", "pos"] * 334)[:n].astype(object)
    channel[100:108] = "fax"
    channel[200:204] = "tel"
    path = tmp_path / "transactions.parquet"
    pq.write_table(
        pa.table(
            {
                "TRANSACTION_ID": np.arange(n),
                "TX_DATETIME": pa.array(1_514_764_800_000_000 + np.arange(n) * 60_000_000, UTC_US),
                "TX_AMOUNT": amount,
                "CHANNEL": pa.array(channel, pa.string()),
                "CARD_ID": np.arange(n) + 10_000,
            }
        ),
        path,
    )
    namespace: dict = {}
    exec(code.replace("data/transactions.parquet", str(path)), namespace)
    with pytest.raises(DataValidationError) as info:
        validate_source_data(engine, [namespace["tx"]], str)
    lines = str(info.value).splitlines()
    assert lines[1:] == shown[1:]
    assert lines[0] == shown[0].replace("data/transactions.parquet", str(path)).removeprefix(
        "DataValidationError: "
    )
