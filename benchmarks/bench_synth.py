"""Benchmark: how fast the synthetic lending world is written, against an I/O anchor.

Usage::

    python benchmarks/bench_synth.py --borrowers 1000000 [--repeat 3] [--seed 42]

Each run happens in a fresh process (so its peak RSS is its own) and writes into a
temporary folder that is removed afterwards. The anchor writes the same number of rows
and columns per table, with the same column types, chunking and compression, from random
numpy columns: the cost of the Parquet writes alone. The ratio says how much the world's
modelling adds on top of writing that much data.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_world(kwargs: dict) -> dict:
    """One generate_world run in this process: wall time, counts, size, peak RSS."""
    from lendml.datasets import generate_world

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "world"
        start = time.perf_counter()
        summary = generate_world(out, **kwargs)
        wall = time.perf_counter() - start
        size = _folder_mb(out)
    return {
        "wall": wall,
        "rows": dict(summary.row_counts),
        "mb": size,
        "rss": _peak_rss_mb(),
        "pre": summary.default_rate_pre_shift,
        "post": summary.default_rate_post_shift,
    }


def _random_column(rng: np.random.Generator, kind: pa.DataType, n: int) -> pa.Array:
    if pa.types.is_string(kind):
        values = pa.array([f"value_{i}" for i in range(8)])
        return pa.DictionaryArray.from_arrays(
            pa.array(rng.integers(0, 8, n, dtype=np.int8)), values
        )
    if pa.types.is_boolean(kind):
        return pa.array(rng.random(n) < 0.5)
    if pa.types.is_floating(kind):
        return pa.array(np.round(rng.random(n) * 1000.0, 2))
    if pa.types.is_timestamp(kind):
        seconds = 1_672_531_200 + rng.integers(0, 63_158_400, n)
        return pa.array(seconds * 1_000_000).view(kind)
    return pa.array(rng.integers(0, 1_000_000, n).astype(kind.to_pandas_dtype()))


def run_anchor(job: dict) -> dict:
    """Write ``rows`` per table of random columns, in ``chunks`` files per table."""
    import pyarrow.parquet as pq

    from lendml.datasets.synth_io import SCHEMAS

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for name, rows in job["rows"].items():
            schema = SCHEMAS[name]
            per_chunk = -(-rows // job["chunks"]) if rows else 0
            for chunk, lo in enumerate(range(0, rows, max(per_chunk, 1))):
                n = min(per_chunk, rows - lo)
                table = pa.table(
                    [_random_column(rng, f.type, n) for f in schema], names=schema.names
                )
                path = Path(tmp) / name / f"part-{chunk}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path, compression="zstd", store_schema=False)
        wall = time.perf_counter() - start
        size = _folder_mb(Path(tmp))
    return {"wall": wall, "mb": size, "rss": _peak_rss_mb()}


def _in_fresh_process(fn, arg) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, arg).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--borrowers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--chunk-borrowers", type=int, default=50_000)
    parser.add_argument("--tx-per-borrower-month", type=float, default=8.0)
    args = parser.parse_args(argv)

    kwargs = {
        "borrowers": args.borrowers,
        "seed": args.seed,
        "months": args.months,
        "shift_month": args.months * 5 // 8 if args.months > 1 else None,
        "chunk_borrowers": args.chunk_borrowers,
        "tx_per_borrower_month": args.tx_per_borrower_month,
    }
    runs = [_in_fresh_process(run_world, kwargs) for _ in range(args.repeat)]
    rows = runs[0]["rows"]
    total = sum(rows.values())
    chunks = -(-args.borrowers // args.chunk_borrowers)
    anchors = [
        _in_fresh_process(run_anchor, {"rows": rows, "chunks": chunks}) for _ in range(args.repeat)
    ]

    wall = statistics.median(r["wall"] for r in runs)
    anchor_wall = statistics.median(a["wall"] for a in anchors)
    print(
        f"synthetic world: {args.borrowers:,} borrowers, {args.months} months, seed {args.seed}, "
        f"chunks of {args.chunk_borrowers:,}; median of {args.repeat} run(s)"
    )
    for name, count in rows.items():
        print(f"  {name:<13} {count:>14,} rows")
    print(f"  {'total':<13} {total:>14,} rows")
    print(f"  default rate pre-shift {runs[0]['pre']}, post-shift {runs[0]['post']}")
    print()
    print(f"{'':<34}{'wall s':>9}{'rows/s':>14}{'peak RSS MB':>13}{'on disk MB':>12}")
    print(
        f"{'generate_world':<34}{wall:>9.1f}{total / wall:>14,.0f}"
        f"{max(r['rss'] for r in runs):>13,.0f}{runs[0]['mb']:>12,.0f}"
    )
    print(
        f"{'anchor: random columns -> parquet':<34}{anchor_wall:>9.1f}"
        f"{total / anchor_wall:>14,.0f}{max(a['rss'] for a in anchors):>13,.0f}"
        f"{anchors[0]['mb']:>12,.0f}"
    )
    print(f"ratio generate_world / anchor: {wall / anchor_wall:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
