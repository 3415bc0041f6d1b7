"""Windowed aggregations at arbitrary as-of times: the 14 FDH features, 1.75M transactions.

lendml (feature definitions → Ibis → DuckDB) vs the same features hand-written in DuckDB
SQL with window frames (the practical floor). Prints the median of --repeat runs of each,
the ratio, and peak RSS. Goal: ratio ≤ 1.5.

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


def run_handwritten(path: str) -> tuple[float, int]:
    con = duckdb.connect()
    t = time.perf_counter()
    n = len(con.sql(handwritten_sql(path)).to_arrow_table())
    dt = time.perf_counter() - t
    con.close()
    return dt, n


def run_lendml(path: str) -> tuple[float, int]:
    from tests.features.test_fdh_reference import fdh_service

    from lendml.engines import create_engine
    from lendml.features.training_set import build_training_set

    spine = pd.read_parquet(
        path, columns=["TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_DATETIME"]
    )
    spine = spine.rename(columns={"TX_DATETIME": "as_of"})
    eng = create_engine("duckdb")
    t = time.perf_counter()
    n = len(build_training_set(eng, fdh_service(path), spine, resolve_path=str))
    dt = time.perf_counter() - t
    eng.close()
    return dt, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = str(DATA)
    hand, mine = [], []
    for _ in range(args.repeat):
        h, nh = run_handwritten(path)
        m, nm = run_lendml(path)
        assert nh == nm, (nh, nm)
        hand.append(h)
        mine.append(m)
    mh, mm = statistics.median(hand), statistics.median(mine)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows: {nm:,} (one per transaction, both)")
    print(
        f"hand-written DuckDB window SQL: median {mh:.2f} s  (runs {', '.join(f'{x:.2f}' for x in hand)})"
    )
    print(
        f"lendml training_set:            median {mm:.2f} s  (runs {', '.join(f'{x:.2f}' for x in mine)})"
    )
    print(f"ratio lendml / hand-written: {mm / mh:.2f}x  (goal <= 1.5x)")
    print(f"peak RSS of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
