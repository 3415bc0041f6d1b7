"""End to end: a project materialized to Redis serves what the same project serves from SQLite."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lendml.project
from lendml import Project
from lendml.errors import StoreError
from lendml.stores.base import create_online_store
from lendml.stores.redis import RedisOnlineStore
from tests.stores.conftest import delete_prefix

FEATURES = """
from lendml import Aggregation, Derived, DerivedView, Entity, Feature, FeatureService, FeatureView, Source
customer = Entity("customer", key="CUSTOMER_ID")
tx = Source.parquet("data/tx.parquet", timestamp="TX_DATETIME")
snap = Source.parquet("data/bureau.parquet", timestamp="snapshot_at")
spend = FeatureView("spend", entity=customer, source=tx, aggregations=[
    Aggregation("TX_AMOUNT", "count", window="1d", name="nb_tx_1d"),
    Aggregation("TX_AMOUNT", "mean", window="7d", name="avg_amount_7d"),
    Aggregation("TX_AMOUNT", "last", window="7d", name="last_amount"),
])
bureau = FeatureView("bureau", entity=customer, source=snap, ttl="45d",
                     features=[Feature("fico"), Feature("grade")])
ratios = DerivedView("ratios", [Derived("spend_per_fico", "avg_amount_7d / fico")])
svc = FeatureService("svc", [spend, bureau, ratios])
"""
END = "2024-01-20T00:00:00"


def make_project(root: Path, online_yaml: str) -> Project:
    Project.init(root).close()
    cfg = root / "lendml.yaml"
    text = cfg.read_text()
    default = "online_store:\n  type: sqlite\n  path: data/online.db\n"
    assert default in text  # the template this test rewrites
    cfg.write_text(text.replace(default, online_yaml))
    (root / "features.py").write_text(FEATURES)
    rng = np.random.default_rng(5)
    n = 400
    pd.DataFrame(
        {
            "CUSTOMER_ID": rng.integers(0, 20, n),
            "TX_DATETIME": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 19 * 86400, n), unit="s"),
            "TX_AMOUNT": rng.gamma(2.0, 60.0, n).round(2),
        }
    ).to_parquet(root / "data" / "tx.parquet")
    pd.DataFrame(
        {
            "CUSTOMER_ID": list(range(0, 24, 2)),
            "snapshot_at": pd.Timestamp("2024-01-01"),
            "fico": rng.integers(500, 800, 12),
            "grade": [f"g:{i}|ü" for i in range(12)],
        }
    ).to_parquet(root / "data" / "bureau.parquet")
    p = Project(root)
    p.apply()
    return p


def test_materialize_and_online_features_agree_on_sqlite_and_redis(
    tmp_path, redis_url, redis_client, monkeypatch
):
    namespace = f"lendml-test-{uuid.uuid4().hex[:12]}"
    # Project passes the configured url; give this test's store its own namespace.
    monkeypatch.setattr(
        lendml.project,
        "create_online_store",
        lambda kind, **opts: create_online_store(
            kind, **({**opts, "namespace": namespace} if kind == "redis" else opts)
        ),
    )
    keys = {"CUSTOMER_ID": list(range(25))}  # 20-24: no history at all
    answers = {}
    try:
        for kind, online_yaml in (
            ("sqlite", "online_store:\n  type: sqlite\n  path: data/online.db\n"),
            ("redis", f"online_store:\n  type: redis\n  url: {redis_url}\n"),
        ):
            root = tmp_path / kind
            with make_project(root, online_yaml) as p:
                report = p.materialize(start="2024-01-10", end=END)
                assert isinstance(p.online_store, RedisOnlineStore) == (kind == "redis")
                answers[kind] = (report.views, p.online_features("svc", keys, as_of=END))
            assert (root / "data" / "online.db").exists() == (kind == "sqlite")
        (sqlite_report, sqlite_df), (redis_report, redis_df) = answers["sqlite"], answers["redis"]
        assert sqlite_report == redis_report
        assert sqlite_report["spend"]["online_rows"] == 20
        assert sqlite_report["bureau"]["online_rows"] == 12
        pd.testing.assert_frame_equal(redis_df, sqlite_df, check_exact=True)
        # the answers are real values, not two identical empty frames
        assert redis_df["nb_tx_1d"].sum() > 0 and redis_df["fico"].notna().sum() == 12
        assert redis_df.loc[redis_df["CUSTOMER_ID"] == 2, "grade"].item() == "g:1|ü"
        # and they live in Redis: one hash per (view, entity)
        assert len(list(redis_client.scan_iter(match=f"{namespace}:spend:*"))) == 20
        assert len(list(redis_client.scan_iter(match=f"{namespace}:bureau:*"))) == 12
    finally:
        delete_prefix(redis_client, f"{namespace}:")


def test_a_redis_project_without_a_server_fails_clearly(tmp_path):
    p = make_project(tmp_path / "p", "online_store:\n  type: redis\n  url: redis://127.0.0.1:1/0\n")
    with pytest.raises(
        StoreError, match=r"Cannot reach the Redis online store at 'redis://127\.0\.0\.1:1/0'"
    ):
        p.online_features("svc", {"CUSTOMER_ID": [1]})
    p.close()
