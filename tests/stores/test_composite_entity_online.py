"""A composite-key entity materialized to every online store and read back (SQLite, Redis).

Runs once per store kind (``make_store`` in ``conftest.py``): the project's online store
is the factory's fresh store, so the Redis run is isolated in its own namespace.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lendml.project
from lendml import Project
from lendml.stores.sqlite import SQLiteOnlineStore
from tests.stores.conftest import StoreFactory

FEATURES = """
from lendml import Aggregation, Entity, Feature, FeatureService, FeatureView, Source
account = Entity("account", key=("bank_id", "account_no"))
tx = Source.parquet("data/tx.parquet", timestamp="ts")
limits = Source.parquet("data/limits.parquet", timestamp="set_at")
activity = FeatureView("activity", entity=account, source=tx, aggregations=[
    Aggregation("amount", "count", window="7d", name="n_7d"),
    Aggregation("amount", "sum", window="7d", name="spend_7d"),
])
limit = FeatureView("limit", entity=account, source=limits, ttl="30d",
                    features=[Feature("credit_limit"), Feature("grade")])
svc = FeatureService("svc", [activity, limit])
"""
END = "2024-01-15T00:00:00"


def make_project(root: Path) -> Project:
    """Account numbers repeat across banks, and one bank id is the text of a number."""
    Project.init(root).close()
    (root / "features.py").write_text(FEATURES)
    rng = np.random.default_rng(9)
    n = 300
    pd.DataFrame(
        {
            "bank_id": rng.choice(["b1", "b2", "7"], n),
            "account_no": rng.integers(0, 6, n),
            "ts": pd.Timestamp("2024-01-05")
            + pd.to_timedelta(rng.integers(0, 9 * 86400, n), unit="s"),
            "amount": rng.gamma(2.0, 30.0, n).round(2),
        }
    ).to_parquet(root / "data" / "tx.parquet")
    pd.DataFrame(
        {
            "bank_id": ["b1", "b2", "7"],
            "account_no": [1, 1, 1],
            "set_at": pd.Timestamp("2024-01-01"),
            "credit_limit": [1000.0, 2000.0, 3000.0],
            "grade": ["a:1|ü", '"b"', "[c]"],
        }
    ).to_parquet(root / "data" / "limits.parquet")
    p = Project(root)
    p.apply()
    return p


def test_composite_keys_round_trip_through_the_online_store(
    tmp_path, make_store: StoreFactory, monkeypatch
):
    store = make_store()
    monkeypatch.setattr(lendml.project, "create_online_store", lambda kind, **opts: store)
    with make_project(tmp_path / "proj") as p:
        report = p.materialize(start="2024-01-10", end=END)
        assert p.online_store is store
        tx = pd.read_parquet(p.root / "data" / "tx.parquet")
        pairs = tx.drop_duplicates(["bank_id", "account_no"])
        assert report.views["activity"]["online_rows"] == len(pairs) == 18
        assert report.views["limit"]["online_rows"] == 3

        keys = {"bank_id": ["b1", "b2", "7", "b1", "b9"], "account_no": [1, 1, 1, 5, 1]}
        online = p.online_features("svc", keys, as_of=END)
        spine = pd.DataFrame(keys).assign(as_of=pd.Timestamp(END, tz="UTC"))
        offline = p.training_set("svc", spine).to_pandas()
        pd.testing.assert_frame_equal(
            online, offline.drop(columns="as_of"), check_dtype=False, check_exact=True
        )
        assert online["credit_limit"].tolist()[:3] == [1000.0, 2000.0, 3000.0]
        assert online["grade"].tolist()[:3] == ["a:1|ü", '"b"', "[c]"]
        assert online["n_7d"].tolist()[-1] == 0  # b9 was never seen

        # the store's key is the tuple of key values in key order, as a JSON list
        (rec,) = store.read_many("limit", [("b2", 1)])
        assert rec is not None and rec.values["credit_limit"] == 2000.0
        as_list = store.read_many("limit", [["b2", 1]])[0]
        assert as_list is not None and (as_list.values, as_list.as_of_us) == (
            rec.values,
            rec.as_of_us,
        )
        # another order, a lone key part, or another type of a part is another key
        assert store.read_many("limit", [(1, "b2"), "b2", ("b2", "1"), (7, 1)]) == [None] * 4
        assert store.read_many("limit", [("7", 1)])[0].values["credit_limit"] == 3000.0
        if isinstance(store, SQLiteOnlineStore):
            con = sqlite3.connect(store.path)
            stored = {
                k for (k,) in con.execute("SELECT entity_key FROM features WHERE view = 'limit'")
            }
            con.close()
            assert stored == {json.dumps(["b1", 1]), json.dumps(["b2", 1]), json.dumps(["7", 1])}


@pytest.mark.parametrize("null_part", ["bank_id", "account_no"])
def test_a_null_key_part_reads_the_no_history_values(
    tmp_path, make_store: StoreFactory, monkeypatch, null_part
):
    store = make_store()
    monkeypatch.setattr(lendml.project, "create_online_store", lambda kind, **opts: store)
    with make_project(tmp_path / "proj") as p:
        p.materialize(start="2024-01-10", end=END)
        row = {"bank_id": "b1", "account_no": 1, null_part: None}
        got = p.online_features("svc", [row], as_of=END).iloc[0]
        assert got["n_7d"] == 0 and got["spend_7d"] == 0
        assert pd.isna(got["credit_limit"]) and pd.isna(got["grade"])
