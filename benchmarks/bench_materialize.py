"""Materialization: throughput into the offline partitions and the SQLite online store.

The views are the demo's (``lendml demo``): ``spending`` (eight windowed aggregations of
transactions: counts, sums, mean, max, std, count_distinct, filters, 30d and 90d windows)
and ``credit_file`` (four row features of the monthly bureau snapshots, TTL 62 days), over
the synthetic lending world (``lendml datasets synth``; generated once and cached).

Usage::

    python benchmarks/bench_materialize.py [--borrowers 100000] [--days 30] [--chunk-days 3]
        [--repeat 3] [--quick]

Within each repeat, three runs are interleaved, each in a fresh subprocess (so its peak
RSS is its own) and a fresh project:

* ``Project.materialize(start, end, every="1d", chunk=c)`` — chunk ``c`` = ``--chunk-days``;
* the same with chunk ``10c`` — memory flatness: peak RSS should not grow ~10x with the
  chunk, as the rows held at once do;
* the anchor: the same output rows (read from the first run's partitions before the clock
  starts) written with plain ``pyarrow.parquet.write_table`` into the same
  ``<view>/date=YYYY-MM-DD/part-0.parquet`` layout, plus a raw ``sqlite3`` ``executemany``
  upsert of the rows at ``end`` as JSON payloads into the same table, one transaction per
  view. It is the cost of the writes alone; the ratio says what computing the features
  adds on top.

Throughput is offline rows (entities x grid days, summed over views) per second of the
whole call; online rows are one per entity and view.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path("/tmp/lendml-bench-mat")
START = "2024-06-01"


def code_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes (a shared tree)."""
    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def ensure_world(borrowers: int, seed: int) -> Path:
    from lendml.datasets import generate_world

    world = CACHE / f"world-{borrowers}-s{seed}"
    if not (world / "world.json").exists():
        print(f"generating the synthetic world ({borrowers:,} borrowers) in {world} (once) ...")
        generate_world(world, borrowers=borrowers, seed=seed, overwrite=True)
    return world


def _end(days: int) -> str:
    import pandas as pd

    return (pd.Timestamp(START) + pd.Timedelta(days=days)).strftime("%Y-%m-%d")


def _new_project(world: Path, tag: str):
    from lendml import Project
    from lendml.cli.demo import LENDING_FEATURES

    root = CACHE / f"project-{tag}-{os.getpid()}"
    if root.exists():
        shutil.rmtree(root)
    project = Project.init(root)
    (root / "data" / "world").symlink_to(world, target_is_directory=True)
    (root / "features.py").write_text(LENDING_FEATURES)
    project.apply()
    return project


def run_lendml(world: Path, days: int, chunk_days: int, save: Path | None) -> dict:
    project = _new_project(world, f"c{chunk_days}")
    _ = project.engine  # one-off: starts DuckDB and imports Ibis' backend (outside the timing)
    t = time.perf_counter()
    report = project.materialize(start=START, end=_end(days), every="1d", chunk=f"{chunk_days}d")
    wall = time.perf_counter() - t
    rss = _peak_rss_mb()
    root = project.root
    project.close()
    if save is not None:
        if save.exists():
            shutil.rmtree(save)
        save.mkdir(parents=True)
        os.replace(root / "data" / "offline", save / "offline")
    shutil.rmtree(root)
    return {
        "wall": wall,
        "rss_mb": rss,
        "offline_rows": report.total_offline_rows(),
        "online_rows": sum(v["online_rows"] for v in report.views.values()),
        "partitions": sum(v["partitions"] for v in report.views.values()),
        "views": report.views,
    }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    view TEXT NOT NULL, entity_key TEXT NOT NULL, as_of_us INTEGER NOT NULL,
    payload TEXT NOT NULL, PRIMARY KEY (view, entity_key)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO features (view, entity_key, as_of_us, payload) VALUES (?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE
SET as_of_us = excluded.as_of_us, payload = excluded.payload
WHERE excluded.as_of_us >= features.as_of_us
"""


def run_anchor(saved: Path, days: int) -> dict:
    """Plain pyarrow writes of the saved partitions + a raw sqlite3 upsert of the end rows."""
    import math
    import sqlite3
    import tempfile

    import pandas as pd
    import pyarrow.parquet as pq

    end = _end(days)
    end_us = int(pd.Timestamp(end, tz="UTC").value // 1000)
    parts = []
    for folder in sorted((saved / "offline").glob("*/date=*")):
        parts.append((folder.parent.name, folder.name, pq.read_table(folder / "part-0.parquet")))
    keys = {"spending": "borrower_id", "credit_file": "borrower_id"}
    offline_rows = sum(t.num_rows for _, _, t in parts)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        for view, date, table in parts:
            (out / view / date).mkdir(parents=True)
            pq.write_table(table, out / view / date / "part-0.parquet")
        con = sqlite3.connect(out / "online.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(_SCHEMA)
        online_rows = 0
        for view, date, table in parts:
            if date != f"date={end}":
                continue
            key = keys[view]
            cols = [c for c in table.column_names if c not in (key, "as_of")]
            rows = [
                (
                    view,
                    json.dumps(r[key]),
                    end_us,
                    json.dumps(
                        {
                            c: None if isinstance(r[c], float) and math.isnan(r[c]) else r[c]
                            for c in cols
                        }
                    ),
                )
                for r in table.select([key, *cols]).to_pylist()
            ]
            con.execute("BEGIN IMMEDIATE")
            con.executemany(_UPSERT, rows)
            con.execute("COMMIT")
            online_rows += len(rows)
        con.close()
        wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "rss_mb": _peak_rss_mb(),
        "offline_rows": offline_rows,
        "online_rows": online_rows,
        "partitions": len(parts),
    }


def run_child(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"{' '.join(args)} took longer than --timeout {timeout:.0f} s; stopped."
        ) from None
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(args)} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--borrowers", type=int)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--days", type=int, help=f"grid days after {START} (every 1d)")
    ap.add_argument("--chunk-days", type=int, help="the small chunk c (the other is 10c)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10k borrowers, 10 days, c = 1d")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per child run")
    ap.add_argument("--child", choices=["lendml", "anchor"], help=argparse.SUPPRESS)
    ap.add_argument("--world", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    borrowers = args.borrowers or (10_000 if args.quick else 100_000)
    days = args.days or (10 if args.quick else 30)
    chunk = args.chunk_days or (1 if args.quick else 3)

    if args.child == "lendml":
        save = Path(args.save) if args.save else None
        print(json.dumps(run_lendml(Path(args.world), days, chunk, save)))
        return 0
    if args.child == "anchor":
        print(json.dumps(run_anchor(Path(args.save), days)))
        return 0

    CACHE.mkdir(parents=True, exist_ok=True)
    world = ensure_world(borrowers, args.seed)
    saved = CACHE / f"saved-{borrowers}-s{args.seed}-{days}d"
    common = ["--world", str(world), "--days", str(days)]
    jobs = {
        f"lendml chunk {chunk}d": ["--child", "lendml", *common, "--chunk-days", str(chunk)],
        f"lendml chunk {10 * chunk}d": [
            "--child",
            "lendml",
            *common,
            "--chunk-days",
            str(10 * chunk),
        ],
        "anchor": ["--child", "anchor", "--days", str(days), "--save", str(saved)],
    }
    runs: dict[str, list[dict]] = {k: [] for k in jobs}
    version_before = code_version()
    for r in range(args.repeat):
        for name, cmd in jobs.items():
            extra = ["--save", str(saved)] if r == 0 and name == f"lendml chunk {chunk}d" else []
            res = run_child(cmd + extra, args.timeout)
            runs[name].append(res)
            print(
                f"  run {r + 1}/{args.repeat} {name:<18} {res['wall']:8.2f} s  "
                f"{res['offline_rows']:>10,} offline rows  peak RSS {res['rss_mb']:,.0f} MB"
            )

    first = runs[f"lendml chunk {chunk}d"][0]
    print()
    print(
        f"lendml at {version_before}"
        + (
            ""
            if version_before == code_version()
            else f" (changed during the runs: now {code_version()})"
        )
    )
    print(
        f"materialize: synthetic world of {borrowers:,} borrowers (seed {args.seed}); views "
        f"spending (8 windowed aggregations) + credit_file (4 row features, TTL 62d); "
        f"{START} .. {_end(days)} every 1d; median of {args.repeat}"
    )
    for view, st in first["views"].items():
        print(
            f"  {view:<12} {st['entities']:>9,} entities  {st['offline_rows']:>11,} offline rows "
            f"in {st['partitions']} partitions  {st['online_rows']:>9,} online rows"
        )
    anchor = statistics.median(x["wall"] for x in runs["anchor"])
    print()
    print(f"{'':<58}{'median s':>9}{'rows/s':>12}{'vs anchor':>11}{'peak RSS MB':>13}")
    for name in jobs:
        wall = statistics.median(x["wall"] for x in runs[name])
        rows = runs[name][0]["offline_rows"]
        label = {
            "anchor": "anchor: pyarrow write_table + sqlite3 executemany upsert",
        }.get(name, f"Project.materialize, {name.removeprefix('lendml ')}")
        counts = {(x["offline_rows"], x["online_rows"]) for x in runs[name]}
        note = "" if len(counts) == 1 else f"  row counts differ between runs: {sorted(counts)}"
        print(
            f"{label:<58}{wall:>9.2f}{rows / wall:>12,.0f}{wall / anchor:>10.2f}x"
            f"{max(x['rss_mb'] for x in runs[name]):>13,.0f}{note}"
        )
    small = max(x["rss_mb"] for x in runs[f"lendml chunk {chunk}d"])
    big = max(x["rss_mb"] for x in runs[f"lendml chunk {10 * chunk}d"])
    same = {
        (x["offline_rows"], x["online_rows"], x["partitions"])
        for k in jobs
        if k.startswith("lendml")
        for x in runs[k]
    }
    print()
    print(
        f"memory flatness: peak RSS at chunk {10 * chunk}d / chunk {chunk}d = {big / small:.2f}x "
        f"(the chunk holds 10x the rows)"
    )
    print(f"same rows at both chunk sizes: {'yes' if len(same) == 1 else f'NO {sorted(same)}'}")
    print(
        "runs (s): "
        + "; ".join(f"{n} " + ", ".join(f"{x['wall']:.2f}" for x in runs[n]) for n in jobs)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
