"""Windowed aggregations at arbitrary as-of times: the 14 FDH features, 1.75M transactions.

lendml (feature definitions → Ibis → DuckDB) vs the same features hand-written in DuckDB
SQL with window frames (the practical floor). Prints the median of --repeat runs of each
(wall time, and this process's CPU time, which DuckDB's threads share and which waiting
for a busy core does not inflate), the ratios, and peak RSS. Goal: wall ratio ≤ 1.5.

    python benchmarks/bench_windows_fdh.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "fdh-simulated-transactions" / "transactions.parquet"

DAY = 86_400_000_000


def handwritten_sql(path: str) -> str:
    cust = []
    term = []
    for d in (1, 7, 30):
        w = f"PARTITION BY CUSTOMER_ID ORDER BY ts RANGE BETWEEN {d * DAY - 1} PRECEDING AND CURRENT ROW"
        cust.append(
            f"count(TX_AMOUNT) OVER ({w}) AS c_nb_{d}, avg(TX_AMOUNT) OVER ({w}) AS c_avg_{d}"
        )
        wt = (
            f"PARTITION BY TERMINAL_ID ORDER BY ts RANGE BETWEEN {(d + 7) * DAY - 1} PRECEDING "
            f"AND {7 * DAY} PRECEDING"
        )
        term.append(
            f"count(TX_FRAUD) OVER ({wt}) AS t_nb_{d}, "
            f"coalesce(sum(TX_FRAUD) OVER ({wt}) / nullif(count(TX_FRAUD) OVER ({wt}), 0), 0) AS t_risk_{d}"
        )
    return f"""
    WITH tx AS (SELECT *, epoch_us(TX_DATETIME) AS ts FROM read_parquet('{path}'))
    SELECT TRANSACTION_ID,
           (dayofweek(TX_DATETIME) IN (0, 6))::INT AS weekend,
           (hour(TX_DATETIME) <= 6)::INT AS night,
           {", ".join(cust)}, {", ".join(term)}
    FROM tx ORDER BY TRANSACTION_ID
    """


def cpu_seconds() -> float:
    """User + system CPU time of this process (all of DuckDB's threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_handwritten(path: str) -> tuple[float, float, int]:
    con = duckdb.connect()
    t, c = time.perf_counter(), cpu_seconds()
    n = len(con.sql(handwritten_sql(path)).to_arrow_table())
    dt, dc = time.perf_counter() - t, cpu_seconds() - c
    con.close()
    return dt, dc, n


def run_lendml(path: str) -> tuple[float, float, int]:
    from tests.features.test_fdh_reference import fdh_service

    from lendml.engines import create_engine
    from lendml.features.training_set import build_training_set

    spine = pd.read_parquet(
        path, columns=["TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_DATETIME"]
    )
    spine = spine.rename(columns={"TX_DATETIME": "as_of"})
    eng = create_engine("duckdb")
    t, c = time.perf_counter(), cpu_seconds()
    n = len(build_training_set(eng, fdh_service(path), spine, resolve_path=str))
    dt, dc = time.perf_counter() - t, cpu_seconds() - c
    eng.close()
    return dt, dc, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = str(DATA)
    hand, mine = [], []
    for _ in range(args.repeat):
        *h, nh = run_handwritten(path)
        *m, nm = run_lendml(path)
        if nh != nm:
            raise SystemExit(f"row counts differ: hand-written {nh:,}, lendml {nm:,}")
        hand.append(h)
        mine.append(m)
    wh, wm = (statistics.median(r[0] for r in runs) for runs in (hand, mine))
    ch, cm = (statistics.median(r[1] for r in runs) for runs in (hand, mine))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def each(rs: list[list[float]], i: int) -> str:
        return ", ".join(f"{r[i]:.2f}" for r in rs)

    print(f"rows: {nm:,} (one per transaction, both)")
    print(
        f"hand-written DuckDB window SQL: wall median {wh:.2f} s (runs {each(hand, 0)}); "
        f"CPU median {ch:.2f} s (runs {each(hand, 1)})"
    )
    print(
        f"lendml training_set:            wall median {wm:.2f} s (runs {each(mine, 0)}); "
        f"CPU median {cm:.2f} s (runs {each(mine, 1)})"
    )
    print(f"ratio lendml / hand-written: wall {wm / wh:.2f}x (goal <= 1.5x), CPU {cm / ch:.2f}x")
    print(f"peak RSS of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
