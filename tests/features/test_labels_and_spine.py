"""Label maturity, spine validation and time-zone rules of training sets."""

from __future__ import annotations

import pandas as pd
import pytest

from lendml import (
    Aggregation,
    DataValidationError,
    Entity,
    FeatureService,
    FeatureView,
    Label,
    Source,
)
from lendml.engines import create_engine
from lendml.errors import TimeZoneError
from lendml.features.training_set import build_training_set


@pytest.fixture(scope="module")
def engine():
    eng = create_engine("duckdb")
    yield eng
    eng.close()


@pytest.fixture
def service(tmp_path):
    ev = pd.DataFrame(
        {"k": [1, 1], "ts": pd.to_datetime(["2024-01-01", "2024-01-03"]), "v": [1.0, 2.0]}
    )
    ev.to_parquet(tmp_path / "ev.parquet")
    view = FeatureView(
        "v",
        entity=Entity("e", key="k"),
        source=Source.parquet(str(tmp_path / "ev.parquet"), timestamp="ts"),
        aggregations=[Aggregation("v", "sum", window="30d", name="s")],
    )
    return FeatureService("svc", [view])


def _spine():
    return pd.DataFrame(
        {
            "k": [1, 1, 1],
            "as_of": pd.to_datetime(["2024-01-02", "2024-01-04", "2024-01-05"], utc=True),
            "bad": [0, 1, 0],
            "observed_at": pd.to_datetime(["2024-06-01", "2024-07-01", None], utc=True),
        }
    )


def test_immature_labels_are_dropped_and_counted(engine, service):
    ts = build_training_set(
        engine,
        service,
        _spine(),
        resolve_path=str,
        label=Label("bad", observed_at="observed_at", cutoff="2024-06-15"),
    )
    df = ts.to_pandas()
    assert ts.immature_labels == 2  # observed after the cutoff, and never observed
    assert df["as_of"].tolist() == [pd.Timestamp("2024-01-02", tz="UTC")]
    assert df["s"].tolist() == [1.0]


def test_immature_labels_can_be_nulled(engine, service):
    ts = build_training_set(
        engine,
        service,
        _spine(),
        resolve_path=str,
        label=Label("bad", observed_at="observed_at", cutoff="2024-06-15", drop_immature=False),
    )
    df = ts.to_pandas()
    assert len(df) == 3 and df["bad"].isna().tolist() == [False, True, True]
    assert df["s"].tolist() == [1.0, 3.0, 3.0]


def test_spine_errors_name_the_problem(engine, service):
    with pytest.raises(DataValidationError, match="no as-of column 'as_of'.*Columns: k, when"):
        build_training_set(
            engine, service, pd.DataFrame({"k": [1], "when": ["2024-01-01"]}), resolve_path=str
        )
    with pytest.raises(DataValidationError, match=r"lacks the entity key column\(s\) \['k'\]"):
        build_training_set(
            engine,
            service,
            pd.DataFrame({"x": [1], "as_of": pd.to_datetime(["2024-01-01"])}),
            resolve_path=str,
        )
    with pytest.raises(DataValidationError, match="1 null as-of"):
        build_training_set(
            engine,
            service,
            pd.DataFrame({"k": [1, 1], "as_of": pd.to_datetime(["2024-01-01", None])}),
            resolve_path=str,
        )


def test_mixed_time_zones_are_refused_and_naive_means_utc(engine, service):
    mixed = pd.DataFrame(
        {
            "k": [1, 1],
            "as_of": [
                pd.Timestamp("2024-01-02", tz="UTC"),
                pd.Timestamp("2024-01-02", tz="America/New_York"),
            ],
        }
    )
    with pytest.raises(TimeZoneError, match="mixes time zones"):
        build_training_set(engine, service, mixed, resolve_path=str)
    naive = pd.DataFrame({"k": [1], "as_of": pd.to_datetime(["2024-01-03 00:00"])})
    aware = pd.DataFrame(
        {"k": [1], "as_of": pd.to_datetime(["2024-01-02 19:00"]).tz_localize("America/New_York")}
    )
    a = build_training_set(engine, service, naive, resolve_path=str).to_pandas()
    b = build_training_set(engine, service, aware, resolve_path=str).to_pandas()
    assert a["s"].tolist() == b["s"].tolist() == [3.0]  # 19:00 New York = 00:00 UTC next day
    assert str(a["as_of"].dt.tz) == "UTC"
