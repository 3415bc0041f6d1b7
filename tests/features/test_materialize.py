"""Materialization: offline partitions, online store, re-runs and killed runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lendml import Project

FEATURES = """
from lendml import Aggregation, Derived, DerivedView, Entity, Feature, FeatureService, FeatureView, Source
customer = Entity("customer", key="CUSTOMER_ID")
tx = Source.parquet("data/tx.parquet", timestamp="TX_DATETIME")
snap = Source.parquet("data/bureau", timestamp="snapshot_at")
spend = FeatureView("spend", entity=customer, source=tx, aggregations=[
    Aggregation("TX_AMOUNT", "count", window="1d", name="nb_tx_1d"),
    Aggregation("TX_AMOUNT", "mean", window="7d", name="avg_amount_7d"),
    Aggregation("TX_AMOUNT", "sum", window="30d", where="TX_AMOUNT > 100", name="big_spend_30d"),
    Aggregation("TX_AMOUNT", "last", window="30d", name="last_amount"),
])
bureau = FeatureView("bureau", entity=customer, source=snap, ttl="45d",
                     features=[Feature("fico"), Feature("utilization")])
ratios = DerivedView("ratios", [Derived("spend_per_fico", "avg_amount_7d / fico"),
                                Derived("night", "hour(as_of) <= 6")])
svc = FeatureService("svc", [spend, bureau, ratios])
"""


def make_project(root: Path, seed: int = 3) -> Project:
    p = Project.init(root)
    (root / "features.py").write_text(FEATURES)
    rng = np.random.default_rng(seed)
    n = 3000
    t0 = pd.Timestamp("2024-01-01")
    tx = pd.DataFrame(
        {
            "CUSTOMER_ID": rng.integers(0, 60, n),
            "TX_DATETIME": t0 + pd.to_timedelta(rng.integers(0, 60 * 86400, n), unit="s"),
            "TX_AMOUNT": rng.gamma(2.0, 60.0, n).round(2),
        }
    )
    tx.to_parquet(root / "data" / "tx.parquet")
    months = pd.date_range("2023-12-01", periods=3, freq="MS")
    bureau = pd.DataFrame(
        [
            {
                "CUSTOMER_ID": c,
                "snapshot_at": m,
                "fico": int(rng.integers(500, 800)),
                "utilization": float(rng.random()),
                "month": m.strftime("%Y-%m"),
            }
            for c in range(0, 70, 2)
            for m in months
        ]
    )
    for month, part in bureau.groupby("month"):
        d = root / "data" / "bureau" / f"month={month}"
        d.mkdir(parents=True)
        part.drop(columns="month").to_parquet(d / "part-0.parquet")
    p.apply()
    return p


def test_online_equals_training_set_at_materialized_time(tmp_path):
    p = make_project(tmp_path / "proj")
    end = "2024-02-20T00:00:00"
    report = p.materialize(start="2024-02-01", end=end)
    assert report.views["spend"]["entities"] > 0
    keys = list(range(0, 75))  # includes entities with no history at all
    online = p.online_features("svc", {"CUSTOMER_ID": keys}, as_of=end)
    spine = pd.DataFrame({"CUSTOMER_ID": keys, "as_of": pd.Timestamp(end, tz="UTC")})
    offline = p.training_set("svc", spine).to_pandas()
    cols = [
        "nb_tx_1d",
        "avg_amount_7d",
        "big_spend_30d",
        "last_amount",
        "fico",
        "utilization",
        "spend_per_fico",
        "night",
    ]
    for c in cols:
        a = online[c].astype("float64").to_numpy()
        b = offline[c].astype("float64").to_numpy()
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=c)
    # an unseen entity gets the no-history values: 0 for additive, null otherwise
    unseen = online[online["CUSTOMER_ID"] == 74].iloc[0]
    assert unseen["nb_tx_1d"] == 0 and unseen["big_spend_30d"] == 0
    assert pd.isna(unseen["avg_amount_7d"]) and pd.isna(unseen["fico"])
    p.close()


def test_rerun_replaces_partitions_without_duplicates(tmp_path):
    p = make_project(tmp_path / "proj")
    r1 = p.materialize(start="2024-02-01", end="2024-02-10", every="1d", chunk="3d")
    files = sorted((p.offline_root / "spend").rglob("*.parquet"))
    assert len(files) == 9  # one partition per day of the grid
    rows1 = pq.read_table(p.offline_root / "spend").num_rows
    r2 = p.materialize(start="2024-02-01", end="2024-02-10", every="1d", chunk="3d")
    rows2 = pq.read_table(p.offline_root / "spend").num_rows
    assert rows1 == rows2 == r1.views["spend"]["offline_rows"] == r2.views["spend"]["offline_rows"]
    con = sqlite3.connect(p.resolve_path("data/online.db"))
    (n,) = con.execute("SELECT count(*) FROM features WHERE view='spend'").fetchone()
    assert n == r1.views["spend"]["entities"]
    # an older backfill never overwrites newer online values
    q = "SELECT entity_key, as_of_us, payload FROM features WHERE view='spend'"
    before = {k: (a, v) for k, a, v in con.execute(q)}
    p.materialize(start="2024-01-20", end="2024-01-25")
    after = {k: (a, v) for k, a, v in con.execute(q)}
    assert all(after[k] == before[k] for k in before)
    assert p.materialization_state()["spend"]["latest_end"].startswith("2024-02-10")
    p.close()


def test_bad_range_is_refused(tmp_path):
    p = make_project(tmp_path / "proj")
    with pytest.raises(Exception, match="must be after"):
        p.materialize(start="2024-02-10", end="2024-02-01")
    with pytest.raises(Exception, match="Invalid --start"):
        p.materialize(start="yesterday-ish", end="2024-02-01")
    p.close()


KILL_SCRIPT = """
import sys
from lendml import Project
p = Project(sys.argv[1])
p.materialize(start="2024-01-05", end="2024-02-25", every="1d", chunk="2d")
"""


@pytest.mark.slow
def test_killed_materialization_leaves_stores_consistent(tmp_path):
    root = tmp_path / "proj"
    p = make_project(root)
    p.materialize(start="2024-01-01", end="2024-01-05")  # an earlier, complete run
    p.close()
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    db = root / "data" / "online.db"
    for delay in (1.5, 3.0, 4.5):
        proc = subprocess.Popen([sys.executable, str(script), str(root)], env=os.environ.copy())
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        # every partition readable, every online view written all-or-nothing
        for f in (root / "data" / "offline").glob("*/date=*/*.parquet"):
            pq.read_table(f)
        con = sqlite3.connect(db)
        for view in ("spend", "bureau"):
            asofs = {
                a
                for (a,) in con.execute(
                    "SELECT DISTINCT as_of_us FROM features WHERE view=?", (view,)
                )
            }
            assert len(asofs) <= 1, (view, asofs)
        con.close()
    # a clean re-run converges to the same result as an uninterrupted run
    p = Project(root)
    p.materialize(start="2024-01-05", end="2024-02-25", every="1d", chunk="2d")
    killed = pq.read_table(root / "data" / "offline" / "spend").to_pandas()
    p.close()
    fresh_root = tmp_path / "fresh"
    fresh = make_project(fresh_root)
    fresh.materialize(start="2024-01-01", end="2024-01-05")
    fresh.materialize(start="2024-01-05", end="2024-02-25", every="1d", chunk="2d")
    clean = pq.read_table(fresh_root / "data" / "offline" / "spend").to_pandas()
    fresh.close()
    key = ["as_of", "CUSTOMER_ID"]
    pd.testing.assert_frame_equal(
        killed.sort_values(key).reset_index(drop=True)[clean.columns],
        clean.sort_values(key).reset_index(drop=True),
        check_dtype=False,
        check_categorical=False,
    )
