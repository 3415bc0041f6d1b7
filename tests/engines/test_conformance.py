"""One conformance suite over every engine: each feature kind, row for row.

A fixed table of tricky cases (ties at the same timestamp, events exactly at the as-of
time and at the window edge, empty windows, null values, null keys, offsets, TTL expiry,
filters, string columns, derived features) runs on DuckDB and on Spark; both must equal
the brute-force reference and each other. A second table does the same for an entity
with a composite key (bank, account), where one key column alone would mix accounts.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import pandas as pd
import pytest

from lendml import (
    Aggregation,
    Derived,
    DerivedView,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Source,
)
from lendml.engines import create_engine
from lendml.features.training_set import build_training_set
from tests.conftest import ON_CI
from tests.features.test_pit_reference import close, reference_agg, reference_lookup

T0 = pd.Timestamp("2024-03-01", tz="UTC")
FUNCS = ["count", "sum", "mean", "min", "max", "std", "last", "count_distinct"]


def _t(h: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=h)


EVENTS = pd.DataFrame(
    [
        # k, hours, v, channel
        (1, 0, 10.0, "web"),
        (1, 0, 30.0, "app"),  # tie with the row above
        (1, 1, None, "web"),  # null value
        (1, 24, 5.0, "web"),  # exactly one day after the first
        (1, 48, -2.0, "app"),
        (2, 10, 7.0, "web"),
        (2, 10, 7.0, "web"),  # exact duplicate
        (3, 100, 1.0, "pos"),
        (None, 5, 99.0, "web"),  # null key never matches
    ],
    columns=["k", "h", "v", "channel"],
)
EVENTS["ts"] = [_t(h) for h in EVENTS["h"]]
EVENTS["k"] = EVENTS["k"].astype("Int64")

SPINE = pd.DataFrame(
    [
        (1, 0),
        (1, 0.5),
        (1, 24),
        (1, 24.000001),
        (1, 25),
        (1, 47.999),
        (1, 48),
        (1, 200),
        (2, 9),
        (2, 10),
        (2, 34),
        (3, 0),
        (4, 50),
        (1, 72),
        (2, 10 + 7 * 24),
    ],
    columns=["k", "h"],
)
SPINE["as_of"] = [_t(h) for h in SPINE["h"]]


# An account is (bank, acct): the same bank with another account, the same account number
# at another bank, ties, an event at the as-of time, a null key part, a TTL expiry.
ACCOUNT_EVENTS = pd.DataFrame(
    [
        # bank, acct, hours, v
        (1, "a", 0, 10.0),
        (1, "b", 0, 20.0),  # same bank, same time, other account
        (2, "a", 0, 40.0),  # same account number, other bank
        (2, "a", 0, 50.0),  # a tie with the row above
        (1, "a", 12, 1.0),
        (1, "b", 30, 2.0),
        (2, "a", 30, None),  # null value
        (1, None, 5, 99.0),  # null key part: no entity
        (2, "b", 60, 7.0),
    ],
    columns=["bank", "acct", "h", "v"],
)
ACCOUNT_EVENTS["ts"] = [_t(h) for h in ACCOUNT_EVENTS["h"]]
ACCOUNT_EVENTS["acct"] = ACCOUNT_EVENTS["acct"].astype("string")

ACCOUNT_SPINE = pd.DataFrame(
    [
        (1, "a", 0),
        (1, "b", 0),
        (2, "a", 0),
        (2, "b", 0),
        (1, "a", 12),
        (1, "a", 20),
        (1, "b", 30),
        (2, "a", 30),
        (2, "a", 40),
        (1, None, 6),
        (2, "b", 61),
        (2, "b", 100),
        (3, "a", 5),
    ],
    columns=["bank", "acct", "h"],
)
ACCOUNT_SPINE["as_of"] = [_t(h) for h in ACCOUNT_SPINE["h"]]
ACCOUNT_SPINE["acct"] = ACCOUNT_SPINE["acct"].astype("string")
ACCOUNT_KEY = ("bank", "acct")


def account_service(path: str, snap_path: str) -> FeatureService:
    account = Entity("account", key=ACCOUNT_KEY)
    views: list = [
        FeatureView(
            f"acct_{boundary}",
            entity=account,
            source=Source.parquet(path, timestamp="ts"),
            boundary=boundary,
            aggregations=[
                Aggregation("v", fn, window="1d", offset=off, name=f"a_{fn}_{boundary}_{off}")
                for fn in FUNCS
                for off in ("0d", "1h")
            ],
        )
        for boundary in ("inclusive", "strict")
    ]
    views += [
        FeatureView(
            f"acct_snap_{boundary}",
            entity=account,
            source=Source.parquet(snap_path, timestamp="ts"),
            boundary=boundary,
            ttl="1d",
            features=[Feature("v", name=f"a_latest_{boundary}")],
        )
        for boundary in ("inclusive", "strict")
    ]
    views.append(DerivedView("acct_d", [Derived("a_ratio", "a_sum_inclusive_0d / 2")]))
    return FeatureService("acct_conf", views)


def service(path: str, snap_path: str) -> FeatureService:
    ent = Entity("e", key="k")
    src = Source.parquet(path, timestamp="ts")
    views = []
    for boundary in ("inclusive", "strict"):
        for off in ("0d", "1h"):
            views.append(
                FeatureView(
                    f"w_{boundary}_{off}",
                    entity=ent,
                    source=src,
                    boundary=boundary,
                    aggregations=[
                        Aggregation("v", fn, window="1d", offset=off, name=f"{fn}_{boundary}_{off}")
                        for fn in FUNCS
                    ]
                    + [
                        Aggregation(
                            "v",
                            "sum",
                            window="2d",
                            offset=off,
                            where="channel IN ('web') AND v > 0",
                            name=f"websum_{boundary}_{off}",
                        ),
                        Aggregation(
                            "channel",
                            "count_distinct",
                            window="3d",
                            offset=off,
                            name=f"nch_{boundary}_{off}",
                        ),
                        Aggregation(
                            "*", "count", window="3d", offset=off, name=f"rows_{boundary}_{off}"
                        ),
                    ],
                )
            )
    snap = Source.parquet(snap_path, timestamp="ts")
    for boundary in ("inclusive", "strict"):
        views.append(
            FeatureView(
                f"snap_{boundary}",
                entity=ent,
                source=snap,
                boundary=boundary,
                ttl="1d",
                features=[
                    Feature("v", name=f"latest_{boundary}"),
                    Feature("channel", name=f"latest_ch_{boundary}"),
                ],
            )
        )
    derived = DerivedView(
        "d",
        [
            Derived("ratio", "coalesce(sum_inclusive_0d / count_inclusive_0d, -1)"),
            Derived("night", "hour(as_of) <= 6 AND weekday(as_of) < 5"),
        ],
    )
    return FeatureService("conf", [*views, derived])


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("conf")
    ev = EVENTS.drop(columns="h")
    ev.to_parquet(d / "events.parquet")
    snap = ev.dropna(subset=["k"]).drop_duplicates(["k", "ts"])
    snap.to_parquet(d / "snap.parquet")
    acct = ACCOUNT_EVENTS.drop(columns="h")
    acct.to_parquet(d / "accounts.parquet")
    acct.drop_duplicates([*ACCOUNT_KEY, "ts"]).to_parquet(d / "account_snap.parquet")
    return (
        str(d / "events.parquet"),
        str(d / "snap.parquet"),
        str(d / "accounts.parquet"),
        str(d / "account_snap.parquet"),
    )


def _engines():
    params = [pytest.param("duckdb", id="duckdb")]
    params.append(
        pytest.param(
            "spark", id="spark", marks=[pytest.mark.spark, pytest.mark.xdist_group("spark")]
        )
    )
    return params


_cache: dict[str, dict[str, pd.DataFrame]] = {}


def _run(kind: str, paths, case: str = "single") -> pd.DataFrame:
    """The training set of one case ("single" or "composite") on one engine.

    Both cases are built by one engine (on Spark: one session start) and cached.
    """
    if kind not in _cache:
        if kind == "spark" and shutil.which("java") is None:
            if ON_CI:
                pytest.fail("CI must have Java 17 for the Spark engine")
            pytest.skip("java not installed")
        eng = create_engine(kind)
        try:
            _cache[kind] = {
                "single": build_training_set(
                    eng, service(*paths[:2]), SPINE.drop(columns="h"), resolve_path=str
                ).to_pandas(),
                "composite": build_training_set(
                    eng,
                    account_service(*paths[2:]),
                    ACCOUNT_SPINE.drop(columns="h"),
                    resolve_path=str,
                ).to_pandas(),
            }
        finally:
            eng.close()
    return _cache[kind][case]


@pytest.mark.parametrize("kind", _engines())
def test_engine_matches_reference(kind, paths):
    out = _run(kind, paths)
    assert len(out) == len(SPINE)
    ev = EVENTS.dropna(subset=["k"])
    for i, row in SPINE.iterrows():
        for boundary in ("inclusive", "strict"):
            for off, off_td in (("0d", timedelta(0)), ("1h", timedelta(hours=1))):
                for fn in FUNCS:
                    want = reference_agg(
                        ev,
                        row["k"],
                        row["as_of"],
                        fn=fn,
                        window=timedelta(days=1),
                        offset=off_td,
                        boundary=boundary,
                        where=False,
                    )
                    got = out.loc[i, f"{fn}_{boundary}_{off}"]
                    assert close(got, want), (kind, fn, boundary, off, dict(row), got, want)
                # filtered sum, distinct strings, row count
                end = row["as_of"] - off_td
                win = ev[(ev["k"] == row["k"])]
                if boundary == "inclusive":
                    w2 = win[(win["ts"] > end - timedelta(days=2)) & (win["ts"] <= end)]
                    w3 = win[(win["ts"] > end - timedelta(days=3)) & (win["ts"] <= end)]
                else:
                    w2 = win[(win["ts"] >= end - timedelta(days=2)) & (win["ts"] < end)]
                    w3 = win[(win["ts"] >= end - timedelta(days=3)) & (win["ts"] < end)]
                web = w2[(w2["channel"] == "web") & (w2["v"] > 0)]["v"].sum()
                assert close(out.loc[i, f"websum_{boundary}_{off}"], float(web))
                assert out.loc[i, f"nch_{boundary}_{off}"] == w3["channel"].nunique()
                assert out.loc[i, f"rows_{boundary}_{off}"] == len(w3)
        snap = ev.drop_duplicates(["k", "ts"])
        for boundary in ("inclusive", "strict"):
            want = reference_lookup(
                snap, row["k"], row["as_of"], boundary=boundary, ttl=timedelta(days=1)
            )
            assert close(out.loc[i, f"latest_{boundary}"], want), (kind, boundary, dict(row))


@pytest.mark.parametrize("kind", _engines())
def test_composite_key_engine_matches_reference(kind, paths):
    out = _run(kind, paths, "composite")
    assert len(out) == len(ACCOUNT_SPINE)
    assert out["bank"].tolist() == ACCOUNT_SPINE["bank"].tolist()  # spine order
    ev = ACCOUNT_EVENTS
    for i, row in ACCOUNT_SPINE.iterrows():
        key = (row["bank"], None if pd.isna(row["acct"]) else row["acct"])
        for boundary in ("inclusive", "strict"):
            for off, off_td in (("0d", timedelta(0)), ("1h", timedelta(hours=1))):
                for fn in FUNCS:
                    want = reference_agg(
                        ev,
                        key,
                        row["as_of"],
                        fn=fn,
                        window=timedelta(days=1),
                        offset=off_td,
                        boundary=boundary,
                        where=False,
                        key_cols=ACCOUNT_KEY,
                    )
                    got = out.loc[i, f"a_{fn}_{boundary}_{off}"]
                    assert close(got, want), (kind, fn, boundary, off, dict(row), got, want)
            want = reference_lookup(
                ev.drop_duplicates([*ACCOUNT_KEY, "ts"]),
                key,
                row["as_of"],
                boundary=boundary,
                ttl=timedelta(days=1),
                key_cols=ACCOUNT_KEY,
            )
            assert close(out.loc[i, f"a_latest_{boundary}"], want), (kind, boundary, dict(row))
        assert close(out.loc[i, "a_ratio"], out.loc[i, "a_sum_inclusive_0d"] / 2)
    # the cases the table is built for, written out: one key column alone would mix them
    assert out["a_sum_inclusive_0d"].tolist()[:4] == [10.0, 20.0, 90.0, 0.0]
    assert out["a_last_inclusive_0d"].tolist()[2] == 50.0  # the tie's largest value
    assert out["a_count_inclusive_0d"].tolist()[9] == 0  # (1, null) is no entity


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
@pytest.mark.parametrize("case", ["single", "composite"])
def test_spark_equals_duckdb_row_for_row(paths, case):
    duck = _run("duckdb", paths, case)
    spark = _run("spark", paths, case)
    assert list(duck.columns) == list(spark.columns)
    pd.testing.assert_frame_equal(
        duck.astype("object").where(duck.notna(), None),
        spark.astype("object").where(spark.notna(), None),
        check_dtype=False,
    )
