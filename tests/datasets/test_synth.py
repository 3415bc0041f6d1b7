"""The synthetic lending world: contract, determinism, time rules, signal and errors."""

from __future__ import annotations

import doctest
import hashlib
import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lendml.datasets
from lendml.datasets import WorldConfig, WorldSummary, generate_world, synth, synth_io
from lendml.datasets.synth_calendar import (
    add_months,
    group_positions,
    rolling_previous_sum,
    weekday,
)
from lendml.errors import ConfigError

SEED = int(os.environ.get("LENDML_TEST_SEED", "42"))
UTC_US = pa.timestamp("us", tz="UTC")
TABLES = ("borrowers", "applications", "bureau", "transactions", "outcomes")

EXPECTED_SCHEMAS = {
    "borrowers": {
        "borrower_id": pa.int64(),
        "created_at": UTC_US,
        "region": pa.string(),
        "age": pa.int32(),
        "employment_years": pa.float64(),
        "home_owner": pa.bool_(),
        "gender": pa.string(),
        "age_group": pa.string(),
        "ethnicity": pa.string(),
    },
    "applications": {
        "application_id": pa.int64(),
        "borrower_id": pa.int64(),
        "applied_at": UTC_US,
        "loan_amount": pa.float64(),
        "term_months": pa.int32(),
        "purpose": pa.string(),
        "stated_income": pa.float64(),
        "channel": pa.string(),
        "requested_rate": pa.float64(),
    },
    "bureau": {
        "borrower_id": pa.int64(),
        "snapshot_at": UTC_US,
        "fico": pa.int32(),
        "num_tradelines": pa.int32(),
        "revolving_utilization": pa.float64(),
        "delinquencies_12m": pa.int32(),
        "inquiries_6m": pa.int32(),
        "total_balance": pa.float64(),
    },
    "transactions": {
        "tx_id": pa.int64(),
        "borrower_id": pa.int64(),
        "tx_at": UTC_US,
        "amount": pa.float64(),
        "direction": pa.string(),
        "category": pa.string(),
        "channel": pa.string(),
    },
    "outcomes": {
        "application_id": pa.int64(),
        "borrower_id": pa.int64(),
        "applied_at": UTC_US,
        "defaulted": pa.int32(),
        "default_at": UTC_US,
        "observed_at": UTC_US,
    },
}


def read(world: Path, name: str) -> pd.DataFrame:
    """A table as pandas (partitioned tables gain their ``month`` partition column)."""
    partitioning = "hive" if name in synth_io.PARTITIONED else None
    return (
        ds.dataset(world / name, format="parquet", partitioning=partitioning).to_table().to_pandas()
    )


def file_hashes(world: Path) -> dict[str, str]:
    return {
        str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(world.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, WorldSummary]:
    # Two chunks, so ids and files across chunks are exercised too.
    out = tmp_path_factory.mktemp("synth") / "world"
    summary = generate_world(out, borrowers=6000, seed=SEED, chunk_borrowers=3500)
    return out, summary


@pytest.fixture(scope="module")
def tables(world) -> dict[str, pd.DataFrame]:
    out, _ = world
    return {name: read(out, name) for name in TABLES}


# --- the public API --------------------------------------------------------------------


def test_public_api_is_sorted_and_complete():
    assert lendml.datasets.__all__ == sorted(lendml.datasets.__all__)
    assert {"generate_world", "WorldConfig", "WorldSummary"} <= set(lendml.datasets.__all__)


def test_docstring_examples_run():
    result = doctest.testmod(synth, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2
    assert result.failed == 0


def test_summary_and_world_json_match_the_files(world, tables):
    out, summary = world
    assert summary.out_dir == out
    assert summary.row_counts == {name: len(tables[name]) for name in TABLES}
    assert summary.row_counts["borrowers"] == 6000
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["row_counts"] == dict(summary.row_counts)
    assert manifest["config"] == summary.config.to_dict()
    assert manifest["default_rate_pre_shift"] == summary.default_rate_pre_shift
    assert manifest["default_rate_post_shift"] == summary.default_rate_post_shift
    text = (out / "world.json").read_text()
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    as_dict = summary.to_dict()
    assert as_dict["out_dir"] == str(out)
    assert as_dict["row_counts"] == manifest["row_counts"]
    with pytest.raises(AttributeError):
        summary.row_counts = {}  # type: ignore[misc]


# --- determinism -----------------------------------------------------------------------


def _small(out: Path, **kwargs) -> WorldSummary:
    args = {"borrowers": 1200, "seed": SEED, "months": 10, "shift_month": 6, "chunk_borrowers": 700}
    return generate_world(out, **{**args, **kwargs})


def test_same_seed_gives_byte_identical_files(tmp_path):
    _small(tmp_path / "a")
    _small(tmp_path / "b")
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert len(a) > 20
    assert a == b


def test_different_seed_gives_different_data(tmp_path):
    _small(tmp_path / "a")
    _small(tmp_path / "b", seed=SEED + 1)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert a.keys() & b.keys()
    assert all(a[k] != b[k] for k in a.keys() & b.keys() if k != "world.json" and "part" in k)


def test_transaction_rate_changes_only_transactions(tmp_path):
    _small(tmp_path / "a")
    _small(tmp_path / "b", tx_per_borrower_month=12.0)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    for key in a:
        if not key.startswith(("transactions", "world.json")):
            assert a[key] == b[key], key
    tx_a, tx_b = read(tmp_path / "a", "transactions"), read(tmp_path / "b", "transactions")
    assert 1.3 < len(tx_b) / len(tx_a) < 1.7


def test_tables_without_rows_still_have_their_schema(tmp_path):
    # One month is too short for an application (>= 35 days after joining) or a snapshot.
    summary = generate_world(tmp_path / "w", borrowers=5, months=1, shift_month=None)
    assert summary.row_counts["applications"] == 0
    assert summary.row_counts["bureau"] == 0
    assert summary.default_rate_pre_shift is None
    for name in ("applications", "outcomes", "bureau"):
        table = ds.dataset(tmp_path / "w" / name, format="parquet").to_table()
        assert table.num_rows == 0
        assert (
            dict(zip(table.schema.names, table.schema.types, strict=True))
            == (EXPECTED_SCHEMAS[name])
        )


# --- schema, keys, references ----------------------------------------------------------


def test_every_file_has_the_contract_schema(world):
    out, _ = world
    for name, expected in EXPECTED_SCHEMAS.items():
        files = sorted((out / name).rglob("*.parquet"))
        assert files, name
        for path in files:
            schema = pq.read_schema(path)
            assert dict(zip(schema.names, schema.types, strict=True)) == expected, path


def test_partitioning_by_month(world, tables):
    out, summary = world
    for name, column in (("bureau", "snapshot_at"), ("transactions", "tx_at")):
        months = sorted(p.name for p in (out / name).iterdir())
        assert months[0] == "month=2023-01" or months[0] == "month=2023-02"
        assert all(m.startswith("month=20") for m in months)
        df = tables[name]
        assert (df[column].dt.strftime("%Y-%m") == df["month"].astype(str)).all()
    assert not any((out / "applications").glob("month=*"))
    assert summary.row_counts["transactions"] > 30 * summary.row_counts["borrowers"]


def test_keys_are_unique(tables):
    assert tables["borrowers"].borrower_id.is_unique
    assert tables["applications"].application_id.is_unique
    assert tables["outcomes"].application_id.is_unique
    assert tables["transactions"].tx_id.is_unique
    assert not tables["bureau"].duplicated(["borrower_id", "snapshot_at"]).any()


def test_ids_are_contiguous_across_chunks(tables):
    for name, key in (
        ("borrowers", "borrower_id"),
        ("applications", "application_id"),
        ("transactions", "tx_id"),
    ):
        ids = np.sort(tables[name][key].to_numpy())
        assert ids[0] == 1 and (np.diff(ids) == 1).all(), name


def test_references_resolve(tables):
    borrowers = set(tables["borrowers"].borrower_id)
    for name in ("applications", "bureau", "transactions", "outcomes"):
        assert set(tables[name].borrower_id) <= borrowers, name
    apps = tables["applications"].set_index("application_id")
    outcomes = tables["outcomes"].set_index("application_id")
    assert set(apps.index) == set(outcomes.index)
    joined = outcomes.join(apps, suffixes=("", "_app"))
    assert (joined.borrower_id == joined.borrower_id_app).all()
    assert (joined.applied_at == joined.applied_at_app).all()


# --- time rules ------------------------------------------------------------------------


def test_times_respect_the_world_and_each_borrower(tables, world):
    start = pd.Timestamp("2023-01-01", tz="UTC")
    end = pd.Timestamp("2025-01-01", tz="UTC")
    created = tables["borrowers"].set_index("borrower_id").created_at
    for name, column in (
        ("borrowers", "created_at"),
        ("applications", "applied_at"),
        ("bureau", "snapshot_at"),
        ("transactions", "tx_at"),
    ):
        times = tables[name][column]
        assert str(times.dt.tz) == "UTC"
        assert times.min() >= start and times.max() < end, name
        if name != "borrowers":
            own = created.loc[tables[name].borrower_id].reset_index(drop=True)
            assert (times.reset_index(drop=True) >= own).all(), name
    apps = tables["applications"]
    gap = apps.applied_at - created.loc[apps.borrower_id].reset_index(drop=True)
    assert gap.min() >= pd.Timedelta(days=35)
    tx_at = tables["transactions"].tx_at
    assert (tx_at == tx_at.dt.floor("s")).all()  # whole seconds


def test_bureau_has_one_snapshot_per_month_from_joining(tables):
    bureau = tables["bureau"]
    snap = bureau.snapshot_at
    assert (snap.dt.day == 1).all() and (snap.dt.hour == 0).all() and (snap.dt.minute == 0).all()
    per_borrower = bureau.groupby("borrower_id").snapshot_at.agg(["min", "count"])
    first = per_borrower["min"]
    months_left = (2024 * 12 + 12) - (first.dt.year * 12 + first.dt.month) + 1
    assert (per_borrower["count"] == months_left).all()
    # The first snapshot is the first month start at or after joining.
    created = tables["borrowers"].set_index("borrower_id").created_at.loc[per_borrower.index]
    assert (first >= created).all()
    assert (first - pd.DateOffset(months=1) < created).all()
    util = bureau.revolving_utilization
    assert 0.005 < util.isna().mean() < 0.04
    assert util.min() >= 0 and util.max() <= 1.5
    assert bureau.fico.between(300, 850).all()


def test_every_application_sees_a_snapshot_before_it(tables):
    apps = tables["applications"].sort_values("applied_at")
    bureau = tables["bureau"].sort_values("snapshot_at")
    seen = pd.merge_asof(
        apps, bureau, left_on="applied_at", right_on="snapshot_at", by="borrower_id"
    )
    assert seen.fico.notna().all()


def test_outcomes_are_observed_after_the_horizon(tables, world):
    _, summary = world
    horizon = summary.config.outcome_horizon_months
    out = tables["outcomes"]
    expected = out.applied_at + pd.DateOffset(months=horizon)
    assert (out.observed_at == expected).all()
    assert set(out.defaulted.unique()) <= {0, 1}
    defaulted = out.defaulted == 1
    assert out.default_at[~defaulted].isna().all()
    assert out.default_at[defaulted].notna().all()
    assert (out.default_at[defaulted] > out.applied_at[defaulted]).all()
    assert (out.default_at[defaulted] < out.observed_at[defaulted]).all()
    # Labels not observable by the world's end are still in the truth table.
    assert (out.observed_at > pd.Timestamp("2025-01-01", tz="UTC")).any()


def test_observed_at_handles_month_ends():
    t = pd.to_datetime(
        ["2023-01-31 10:00:00", "2024-02-29 23:59:59", "2023-03-31 00:00:00"], utc=True
    )
    seconds = t.as_unit("s").asi8
    for months in (1, 12, 13):
        got = pd.to_datetime(add_months(seconds, months), unit="s", utc=True)
        assert list(got) == list(t + pd.DateOffset(months=months))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=4_000_000_000),
    st.integers(min_value=1, max_value=120),
)
def test_add_months_matches_pandas(seconds, months):
    got = add_months(np.array([seconds]), months)[0]
    expected = pd.Timestamp(seconds, unit="s", tz="UTC") + pd.DateOffset(months=months)
    assert pd.Timestamp(got, unit="s", tz="UTC") == expected
    assert weekday(np.array([seconds]))[0] == pd.Timestamp(seconds, unit="s").weekday()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=8), st.integers(1, 5))
def test_rolling_previous_sum_matches_brute_force(sizes, window):
    rng = np.random.default_rng(sum(sizes) + window)
    values = rng.integers(0, 5, sum(sizes)).astype(float)
    group, position = group_positions(np.array(sizes))
    got = rolling_previous_sum(values, position, window)
    for i in range(len(values)):
        lo = i - min(position[i], window)
        assert got[i] == values[lo:i].sum()
        assert group[lo] == group[i] or lo == i


# --- risk and the shock ----------------------------------------------------------------


def test_default_rate_in_range_and_higher_after_the_shift(world):
    _, summary = world
    pre, post = summary.default_rate_pre_shift, summary.default_rate_post_shift
    assert 0.07 <= pre <= 0.13
    assert 1.4 <= post / pre <= 2.2


def test_shift_is_visible_in_applications_bureau_and_transactions(tables):
    shock = pd.Timestamp("2024-04-01", tz="UTC")
    apps = tables["applications"]
    after = apps.applied_at >= shock
    income_ratio = apps.stated_income[after].median() / apps.stated_income[~after].median()
    assert 0.80 < income_ratio < 0.96

    bureau = tables["bureau"]
    b_after = bureau.snapshot_at >= shock
    lift = (
        bureau.revolving_utilization[b_after].mean() - bureau.revolving_utilization[~b_after].mean()
    )
    assert lift > 0.05

    tx = tables["transactions"]
    t_after = tx.tx_at >= shock
    share = (tx.category == "cash_advance").groupby(t_after).mean()
    assert share[True] > 1.3 * share[False]
    salary = tx[tx.category == "salary"].groupby(t_after[tx.category == "salary"]).amount.median()
    assert salary[True] < 0.95 * salary[False]


def test_world_without_shift(tmp_path):
    summary = _small(tmp_path / "w", shift_month=None, borrowers=1500)
    assert summary.default_rate_post_shift is None
    assert 0.05 <= summary.default_rate_pre_shift <= 0.15
    apps = read(tmp_path / "w", "applications")
    late = apps.applied_at >= pd.Timestamp("2023-07-01", tz="UTC")
    assert 0.92 < apps.stated_income[late].median() / apps.stated_income[~late].median() < 1.08


def test_transaction_volume_and_directions(tables):
    tx = tables["transactions"]
    assert (tx.amount > 0).all()
    assert set(tx.direction) == {"debit", "credit"}
    credits = set(tx.category[tx.direction == "credit"])
    assert credits == {"salary", "transfer_in"}
    assert {"salary", "groceries", "cash_advance", "gambling"} <= set(tx.category)
    assert 8 <= tx.category.nunique() <= 12
    # Full months (neither a borrower's first nor last active month) average ~8.
    per_month = tx.groupby(["borrower_id", "month"], observed=True).size().reset_index()
    edges = per_month.groupby("borrower_id").month.transform(
        lambda m: (m == m.min()) | (m == m.max())
    )
    assert 7.0 < per_month[0][~edges].mean() < 9.0
    # Daily and weekly cycles: purchases rarely happen at 3-4am; dining peaks on weekends.
    dining = tx[tx.category == "dining"].tx_at
    assert (dining.dt.hour.isin([3, 4])).mean() < 0.02
    assert dining.dt.day_of_week.isin([4, 5]).mean() > 2 / 7 + 0.03


# --- the sequence signal ---------------------------------------------------------------


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2):
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(x)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    for _ in range(25):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + ridge * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + ridge * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return lambda x_new: np.column_stack([np.ones(len(x_new)), (x_new - mean) / std]) @ w


_FEATURES_SQL = """
with w as (
    select a.application_id, t.borrower_id, t.tx_at, t.amount, t.category, t.direction,
           epoch(a.applied_at - t.tx_at) / 86400.0 as age_d
    from apps a join tx t
      on t.borrower_id = a.borrower_id
     and t.tx_at < a.applied_at and t.tx_at >= a.applied_at - interval 120 day
),
agg as (
    select application_id,
        coalesce(sum(amount) filter (where direction = 'debit' and age_d <= 30), 0) as deb30,
        coalesce(sum(amount) filter (where direction = 'debit' and age_d <= 90), 0) as deb90,
        coalesce(sum(amount) filter (where direction = 'credit' and age_d <= 30), 0) as cred30,
        coalesce(sum(amount) filter (where direction = 'credit' and age_d <= 90), 0) as cred90,
        count(*) filter (where age_d <= 30) as n30,
        count(*) filter (where age_d <= 90) as n90,
        count(*) filter (where category = 'cash_advance' and age_d <= 90) as cash90,
        count(*) filter (where category = 'gambling' and age_d <= 90) as gamble90,
        count(*) filter (where category = 'salary' and age_d <= 90) as salaries90,
        -- order: does the salary arrive later each month? (days of month per month)
        coalesce(regr_slope(day(tx_at), epoch(tx_at) / 86400.0 / 30.44)
                 filter (where category = 'salary'), 0) as salary_drift
    from w group by 1
),
salary as (select borrower_id, tx_at as paid_at from tx where category = 'salary'),
purchases as (
    select w.application_id, w.tx_at, s.paid_at
    from w asof left join salary s on s.borrower_id = w.borrower_id and w.tx_at >= s.paid_at
    where w.category in ('groceries', 'dining', 'shopping') and w.age_d <= 90
),
burst as (  -- order: share of purchases in the 4 days after a payday
    select application_id,
           avg(case when paid_at is not null and tx_at - paid_at < interval 4 day
               then 1.0 else 0.0 end) as after_payday
    from purchases group by 1
),
bureau_then as (
    select a.application_id, b.fico, coalesce(b.revolving_utilization, 0.45) as util,
           b.delinquencies_12m as dq, b.inquiries_6m as inq
    from apps a asof join bureau b
      on b.borrower_id = a.borrower_id and b.snapshot_at <= a.applied_at
)
select a.application_id, a.loan_amount / a.stated_income as loan_to_income,
       a.requested_rate, a.term_months, a.stated_income, o.defaulted,
       coalesce(agg.deb30, 0) deb30, coalesce(agg.deb90, 0) deb90,
       coalesce(agg.cred30, 0) cred30, coalesce(agg.cred90, 0) cred90,
       coalesce(agg.n30, 0) n30, coalesce(agg.n90, 0) n90,
       coalesce(agg.cash90, 0) cash90, coalesce(agg.gamble90, 0) gamble90,
       coalesce(agg.salaries90, 0) salaries90,
       coalesce(agg.salary_drift, 0) salary_drift,
       coalesce(burst.after_payday, 0.25) after_payday,
       bt.fico, bt.util, bt.dq, bt.inq
from apps a join outcomes o using (application_id)
left join agg using (application_id)
left join burst using (application_id)
join bureau_then bt using (application_id)
where a.applied_at < timestamptz '2024-04-01 00:00:00+00'   -- one regime: before the shock
order by a.application_id
"""


def test_order_of_transactions_carries_signal_that_aggregates_miss(tmp_path):
    out = tmp_path / "w"
    generate_world(out, borrowers=20_000, seed=SEED)
    con = duckdb.connect()
    views = {
        "apps": "applications",
        "tx": "transactions",
        "bureau": "bureau",
        "outcomes": "outcomes",
    }
    for view, name in views.items():
        files = out / name / ("**/*.parquet" if name in synth_io.PARTITIONED else "*.parquet")
        con.execute(f"create view {view} as select * from read_parquet('{files}')")
    df = con.execute(_FEATURES_SQL).df()
    df["spend_ratio"] = df.deb90 / np.maximum(df.cred90, 1.0)
    df["income_seen"] = df.cred90 / 3.0 / df.stated_income
    df["drift"] = df.salary_drift.fillna(0.0).clip(-15, 15)  # NaN: a single salary
    aggregates = [
        "loan_to_income", "requested_rate", "term_months", "stated_income", "deb30", "deb90",
        "cred30", "cred90", "n30", "n90", "cash90", "gamble90", "salaries90", "spend_ratio",
        "income_seen", "fico", "util", "dq", "inq",
    ]  # fmt: skip
    order_based = ["drift", "after_payday"]
    y = df.defaulted.to_numpy().astype(float)
    train = (df.application_id % 2 == 0).to_numpy()
    test = ~train

    def test_auc(columns: list[str]) -> float:
        x = df[columns].to_numpy(dtype=float)
        return _auc(y[test], _fit_logistic(x[train], y[train])(x[test]))

    auc_aggregates = test_auc(aggregates)
    auc_with_order = test_auc(aggregates + order_based)
    assert auc_aggregates > 0.70  # aggregates are informative...
    assert auc_with_order - auc_aggregates > 0.015  # ...but the order adds real lift
    # And the order features are not just proxies of the aggregates.
    corr = df[aggregates + order_based].corr().loc[order_based, aggregates].abs()
    assert corr.to_numpy().max() < 0.3


# --- out_dir handling and errors -------------------------------------------------------


def test_refuses_a_non_empty_out_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"'out_dir'.*keep\.txt.*overwrite=True") as info:
        generate_world(tmp_path, borrowers=50)
    assert isinstance(info.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_overwrite_replaces_the_world_and_keeps_other_files(tmp_path):
    _small(tmp_path, borrowers=300)
    (tmp_path / "notes.txt").write_text("mine")
    before = file_hashes(tmp_path)
    summary = _small(tmp_path, borrowers=400, overwrite=True)
    after = file_hashes(tmp_path)
    assert summary.row_counts["borrowers"] == 400
    assert len(read(tmp_path, "borrowers")) == 400
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert before["borrowers/part-0.parquet"] != after["borrowers/part-0.parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_no_staging_folder_is_left_behind(world):
    out, _ = world
    assert sorted(p.name for p in out.iterdir()) == sorted([*TABLES, "world.json"])


def test_a_failure_leaves_out_dir_as_it_was(tmp_path, monkeypatch):
    _small(tmp_path, borrowers=300)
    before = file_hashes(tmp_path)
    calls = {"n": 0}
    real_write = synth_io.write_parquet

    def failing_write(path, table):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full")
        real_write(path, table)

    monkeypatch.setattr(synth_io, "write_parquet", failing_write)
    with pytest.raises(OSError, match="disk full"):
        _small(tmp_path, borrowers=500, overwrite=True)
    assert file_hashes(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failure_while_publishing_restores_the_old_world(tmp_path, monkeypatch):
    _small(tmp_path, borrowers=300)
    before = file_hashes(tmp_path)
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:  # after the new borrowers went in, before applications
            raise OSError("device busy")
        real_replace(src, dst)

    monkeypatch.setattr(synth.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="device busy"):
        _small(tmp_path, borrowers=500, overwrite=True)
    assert file_hashes(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwrite_refuses_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "transactions").mkdir()
    (tmp_path / "transactions" / "precious.csv").write_text("a,b")
    with pytest.raises(ConfigError, match="no world.json"):
        generate_world(tmp_path, borrowers=50, overwrite=True)
    assert (tmp_path / "transactions" / "precious.csv").read_text() == "a,b"


def test_a_failed_run_removes_the_out_dir_it_created(tmp_path, monkeypatch):
    def failing_write(path, table):
        raise OSError("disk full")

    monkeypatch.setattr(synth_io, "write_parquet", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate_world(tmp_path / "new", borrowers=50)
    assert not (tmp_path / "new").exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="'out_dir'.*is a file"):
        generate_world(path, borrowers=10)


@pytest.mark.parametrize(
    ("kwargs", "name", "shown", "allowed"),
    [
        ({"borrowers": 0}, "borrowers", "0", "[1, 1000000000]"),
        ({"borrowers": -5}, "borrowers", "-5", "[1, 1000000000]"),
        ({"borrowers": True}, "borrowers", "True", "[1, 1000000000]"),
        ({"borrowers": 2.5}, "borrowers", "2.5", "[1, 1000000000]"),
        ({"months": 0}, "months", "0", "[1, 600]"),
        ({"shift_month": 24}, "shift_month", "24", "[1, 23]"),
        ({"shift_month": 0}, "shift_month", "0", "[1, 23]"),
        ({"months": 1, "shift_month": 0}, "shift_month", "0", "None"),
        ({"seed": -1}, "seed", "-1", "[0, "),
        ({"outcome_horizon_months": 0}, "outcome_horizon_months", "0", "[1, 120]"),
        ({"tx_per_borrower_month": 2.0}, "tx_per_borrower_month", "2.0", "[4.0, 1000.0]"),
        ({"chunk_borrowers": 0}, "chunk_borrowers", "0", "[1, 5000000]"),
        ({"start": "2023-01-15"}, "start", "'2023-01-15'", "first day of a month"),
        ({"start": "soon"}, "start", "'soon'", "ISO date"),
        ({"overwrite": "yes"}, "overwrite", "'yes'", "bool"),
    ],
)
def test_bad_arguments_name_the_argument_value_and_range(tmp_path, kwargs, name, shown, allowed):
    args = {"borrowers": 10, **kwargs}
    with pytest.raises(ConfigError) as info:
        generate_world(tmp_path / "w", **args)
    message = str(info.value)
    assert f"'{name}'" in message
    assert f"Got {shown}" in message
    assert allowed in message
    assert info.value.context["argument"] == name
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "w").exists()  # nothing is created for a bad call


def test_config_is_normalised_and_validated_on_its_own():
    config = WorldConfig(borrowers=10, tx_per_borrower_month=8)
    assert config.tx_per_borrower_month == 8.0
    assert isinstance(config.tx_per_borrower_month, float)
    assert config.to_dict()["shift_month"] == 15
    with pytest.raises(ConfigError, match="'months'"):
        WorldConfig(borrowers=10, months=0)
