"""One conformance suite over every engine: each feature kind, row for row.

A fixed table of tricky cases (ties at the same timestamp, events exactly at the as-of
time and at the window edge, empty windows, null values, null keys, offsets, TTL expiry,
filters, string columns, derived features) runs on DuckDB and on Spark; both must equal
the brute-force reference and each other.
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
    return str(d / "events.parquet"), str(d / "snap.parquet")


def _engines():
    params = [pytest.param("duckdb", id="duckdb")]
    params.append(
        pytest.param(
            "spark", id="spark", marks=[pytest.mark.spark, pytest.mark.xdist_group("spark")]
        )
    )
    return params


_cache: dict[str, pd.DataFrame] = {}


def _run(kind: str, paths) -> pd.DataFrame:
    if kind not in _cache:
        if kind == "spark" and shutil.which("java") is None:
            if ON_CI:
                pytest.fail("CI must have Java 17 for the Spark engine")
            pytest.skip("java not installed")
        eng = create_engine(kind)
        try:
            _cache[kind] = build_training_set(
                eng, service(*paths), SPINE.drop(columns="h"), resolve_path=str
            ).to_pandas()
        finally:
            eng.close()
    return _cache[kind]


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


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_spark_equals_duckdb_row_for_row(paths):
    duck = _run("duckdb", paths)
    spark = _run("spark", paths)
    assert list(duck.columns) == list(spark.columns)
    pd.testing.assert_frame_equal(
        duck.astype("object").where(duck.notna(), None),
        spark.astype("object").where(spark.notna(), None),
        check_dtype=False,
    )
