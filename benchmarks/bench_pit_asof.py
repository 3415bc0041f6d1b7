"""Point-in-time join: a 1M-row spine against a 5M-row row-feature view with a TTL.

Three contenders build the same training set from the same Parquet files:

* **anchor** — a hand-written DuckDB ``ASOF LEFT JOIN`` (the floor: one query, TTL as a
  ``CASE``, rows in spine order);
* **lendml** — ``Project(...).training_set(...)`` on DuckDB over a ``FeatureView`` of
  20 ``Feature`` columns with ``ttl="14d"``;
* **feast** — Feast (newest on PyPI unless ``--feast-spec`` pins one) with its DuckDB
  offline store, ``get_historical_features(...).to_arrow()``, in its own virtualenv that
  this script creates under ``/tmp`` and reuses between runs (``--no-feast`` skips it).
  Feast's default (dask) offline store drops spine rows that have no earlier feature row;
  the DuckDB one keeps them, which is what this compares.

Usage::

    python benchmarks/bench_pit_asof.py [--repeat 3] [--quick] [--no-feast]

Every run of every contender happens in a fresh subprocess, so its peak RSS
(``getrusage`` in the child) is its own; contenders are interleaved within each repeat.
Each prints its median wall time (from spine file to an Arrow table in hand; imports and
one-off setup such as ``apply`` are outside the timing), its output row count (which must
be the spine's, including spine rows with no earlier feature row, or an unseen key, which
get nulls) and whether every value equals the anchor's (rows matched on ``spine_id``;
nulls in the same places). The data is generated once and cached under ``--data``.

Goals: lendml <= 1.5x the hand-written ASOF JOIN, and >= 10x faster than Feast.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_FEATURES = 20
TTL_DAYS = 14
DAY_US = 86_400_000_000
FEAST_VENV = Path("/tmp/lendml-bench-feast")


def feature_names(n: int = N_FEATURES) -> list[str]:
    return [f"f{i:02d}" for i in range(n)]


# ---------------------------------------------------------------------------- data


def make_data(folder: Path, *, entities: int, per_entity: int, spine_rows: int, seed: int) -> None:
    """Write ``features.parquet`` (entities x per_entity rows) and ``spine.parquet``.

    Per entity, event times start at a random point of the first 60 days of 2024 and
    follow exponential gaps (mean 7 days), so about 13% of gaps exceed the 14-day TTL.
    The spine draws 2% of its keys from entities that have no rows, puts 5% of its as-of
    times exactly on a feature row's time (the inclusive boundary), and spreads the rest
    from 20 days before its entity's first row to 20 days after its last, so it holds
    rows with no earlier feature row, rows whose latest row is older than the TTL, and
    rows with a fresh value.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = np.int64(1_704_067_200) * 1_000_000  # 2024-01-01T00:00:00Z in µs
    start = base + rng.integers(0, 60 * 86_400, entities) * 1_000_000
    gaps = np.maximum(1, rng.exponential(7 * 86_400, (entities, per_entity)).astype(np.int64))
    ts = start[:, None] + np.cumsum(gaps, axis=1) * 1_000_000
    keys = np.repeat(np.arange(entities, dtype=np.int64), per_entity)
    ts = ts.ravel()
    order = np.argsort(ts, kind="stable")  # an append log: rows in event-time order
    cols = {
        "borrower_id": pa.array(keys[order]),
        "event_ts": pa.array(ts[order]).view(pa.timestamp("us", tz="UTC")),
    }
    n = entities * per_entity
    for name in feature_names():
        cols[name] = pa.array(np.round(rng.normal(0.0, 100.0, n), 4))
    pq.write_table(pa.table(cols), folder / "features.parquet.tmp")
    os.replace(folder / "features.parquet.tmp", folder / "features.parquet")

    unseen = rng.random(spine_rows) < 0.02
    spine_keys = np.where(
        unseen,
        entities + rng.integers(0, max(entities // 50, 1), spine_rows),
        rng.integers(0, entities, spine_rows),
    )
    grid = ts.reshape(entities, per_entity)
    row = spine_keys % entities
    lo, hi = grid[row, 0] - 20 * DAY_US, grid[row, -1] + 20 * DAY_US
    as_of = (lo + (rng.random(spine_rows) * (hi - lo)).astype(np.int64)) // 1_000_000 * 1_000_000
    exact = ~unseen & (rng.random(spine_rows) < 0.05)
    picked = rng.integers(0, per_entity, spine_rows)
    as_of = np.where(exact, grid[row, picked], as_of)
    spine = pa.table(
        {
            "spine_id": pa.array(np.arange(spine_rows, dtype=np.int64)),
            "borrower_id": pa.array(spine_keys.astype(np.int64)),
            "as_of": pa.array(as_of).view(pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(spine, folder / "spine.parquet")
    (folder / "READY").write_text(
        json.dumps({"entities": entities, "per_entity": per_entity, "spine": spine_rows})
    )


# ---------------------------------------------------------------------------- contenders


def anchor_sql(folder: Path) -> str:
    ttl_us = TTL_DAYS * DAY_US
    feats = ", ".join(
        f"CASE WHEN epoch_us(f.event_ts) >= epoch_us(s.as_of) - {ttl_us} THEN f.{c} END AS {c}"
        for c in feature_names()
    )
    return f"""
    SELECT s.spine_id, s.borrower_id, s.as_of, {feats}
    FROM read_parquet('{folder / "spine.parquet"}') AS s
    ASOF LEFT JOIN read_parquet('{folder / "features.parquet"}') AS f
      ON s.borrower_id = f.borrower_id AND s.as_of >= f.event_ts
    ORDER BY s.spine_id
    """


def run_anchor(folder: Path):
    import duckdb

    con = duckdb.connect()
    t = time.perf_counter()
    table = con.sql(anchor_sql(folder)).to_arrow_table()
    wall = time.perf_counter() - t
    con.close()
    return wall, table


LENDML_FEATURES = '''\
"""The benchmark's row-feature view: 20 columns of the latest row, 14-day TTL."""

from lendml import Entity, Feature, FeatureService, FeatureView, Source

borrower = Entity("borrower", key="borrower_id")
snapshots = Source.parquet({path!r}, timestamp="event_ts")
pit = FeatureView(
    "pit", entity=borrower, source=snapshots,
    features=[Feature(f"f{{i:02d}}") for i in range({n})],
    ttl="{ttl}d",
)
pit_v1 = FeatureService("pit_v1", [pit])
'''


def run_lendml(folder: Path):
    from lendml import Project

    root = folder / "lendml-project"
    if not (root / "lendml.yaml").exists():
        Project.init(root)
    (root / "features.py").write_text(
        LENDML_FEATURES.format(path=str(folder / "features.parquet"), n=N_FEATURES, ttl=TTL_DAYS)
    )
    project = Project(root)
    project.apply()
    _ = project.engine  # one-off: starts DuckDB and imports Ibis' backend, as the anchor's import
    t = time.perf_counter()
    table = project.training_set("pit_v1", folder / "spine.parquet").to_arrow()
    wall = time.perf_counter() - t
    project.close()
    return wall, table


FEAST_YAML = """\
project: lendml_bench
registry: {root}/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {root}/online.db
entity_key_serialization_version: 3
"""


def run_feast(folder: Path):
    from datetime import timedelta

    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    root = folder / "feast-repo"
    root.mkdir(exist_ok=True)
    (root / "feature_store.yaml").write_text(FEAST_YAML.format(root=root))
    store = FeatureStore(repo_path=str(root))
    borrower = Entity(name="borrower", join_keys=["borrower_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="pit",
        entities=[borrower],
        ttl=timedelta(days=TTL_DAYS),
        schema=[
            Field(name="borrower_id", dtype=Int64),
            *[Field(name=c, dtype=Float64) for c in feature_names()],
        ],
        source=FileSource(path=str(folder / "features.parquet"), timestamp_field="event_ts"),
    )
    store.apply([borrower, view])
    # One-off imports the first query would otherwise pay inside the timing.
    import feast.infra.offline_stores.duckdb  # noqa: F401
    import ibis

    ibis.duckdb.connect().disconnect()
    refs = [f"pit:{c}" for c in feature_names()]
    t = time.perf_counter()
    spine = pd.read_parquet(folder / "spine.parquet").rename(columns={"as_of": "event_timestamp"})
    table = store.get_historical_features(entity_df=spine, features=refs).to_arrow()
    wall = time.perf_counter() - t
    return wall, table


CONTENDERS = {"anchor": run_anchor, "lendml": run_lendml, "feast": run_feast}


def child(name: str, folder: Path, save: str | None) -> None:
    """Run one contender once; print a JSON line with its wall time, rows and peak RSS."""
    wall, table = CONTENDERS[name](folder)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    if save:
        import pyarrow.parquet as pq

        if "event_timestamp" in table.column_names:
            table = table.rename_columns(
                ["as_of" if c == "event_timestamp" else c for c in table.column_names]
            )
        pq.write_table(table, save)
    print(json.dumps({"wall": wall, "rows": table.num_rows, "rss_mb": rss}))


# ---------------------------------------------------------------------------- parent


def code_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes (a shared tree)."""
    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")


def ensure_feast_venv(spec: str) -> Path:
    """A virtualenv with ``spec`` installed, created on first use and then reused."""
    py = FEAST_VENV / "bin" / "python"
    marker = FEAST_VENV / f".installed-{spec.replace('/', '_')}"
    if py.exists() and marker.exists():
        return py
    print(f"creating {FEAST_VENV} with pip install {spec!r} (once; later runs reuse it) ...")
    log = Path(f"{FEAST_VENV}-install.log")
    with log.open("w") as out:
        try:
            if not py.exists():
                subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
            subprocess.run(
                [str(py), "-m", "pip", "install", "-q", spec], check=True, stdout=out, stderr=out
            )
        except subprocess.CalledProcessError as exc:
            raise SystemExit(
                f"Installing {spec!r} into {FEAST_VENV} failed ({exc}); see {log}. Rerun with "
                "--no-feast to measure lendml and the ASOF JOIN alone."
            ) from exc
    marker.write_text(spec)
    return py


def run_child(python: str, name: str, folder: Path, save: Path | None, timeout: float) -> dict:
    cmd = [python, __file__, "--child", name, "--data", str(folder)]
    if save is not None:
        cmd += ["--save", str(save)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{name} took longer than --timeout {timeout:.0f} s; stopped.") from None
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{name} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(anchor_path: Path, other_path: Path) -> tuple[bool, str]:
    """Every value of ``other`` equals the anchor's (rows matched on spine_id)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    a = pq.read_table(anchor_path)
    b = pq.read_table(other_path)
    if a.num_rows != b.num_rows:
        return False, f"row count {b.num_rows:,} != {a.num_rows:,}"
    a = a.sort_by("spine_id")
    b = b.sort_by("spine_id")
    bad = []
    for c in ["spine_id", "borrower_id", *feature_names()]:
        x, y = a[c].combine_chunks(), b[c].combine_chunks()
        if not x.equals(y):
            nulls = pc.sum(pc.xor(x.is_null(), y.is_null())).as_py()
            bad.append(f"{c} ({nulls:,} null mismatches)")
    as_of_a = a["as_of"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    as_of_b = b["as_of"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    if not as_of_a.equals(as_of_b):
        bad.append("as_of")
    if bad:
        return False, "differ: " + ", ".join(bad[:5])
    return True, f"all {N_FEATURES} features equal"


def null_share(path: Path) -> float:
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["f00"])["f00"]
    return col.null_count / max(len(col), 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10k entities, 100k-row spine")
    ap.add_argument("--entities", type=int)
    ap.add_argument("--per-entity", type=int, default=50)
    ap.add_argument("--spine", type=int)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", help="data folder (default: a cache under /tmp)")
    ap.add_argument("--no-feast", action="store_true")
    ap.add_argument("--feast-spec", default="feast[duckdb]")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per child run")
    ap.add_argument("--child", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        child(args.child, Path(args.data), args.save)
        return 0

    entities = args.entities or (10_000 if args.quick else 100_000)
    spine_rows = args.spine or (100_000 if args.quick else 1_000_000)
    folder = Path(
        args.data
        or f"/tmp/lendml-bench-pit/{entities}x{args.per_entity}-spine{spine_rows}-s{args.seed}"
    )
    if not (folder / "READY").exists():
        print(f"writing the data to {folder} (once) ...")
        make_data(
            folder,
            entities=entities,
            per_entity=args.per_entity,
            spine_rows=spine_rows,
            seed=args.seed,
        )
    names = ["anchor", "lendml"]
    pythons = {"anchor": sys.executable, "lendml": sys.executable}
    feast_version = None
    if args.no_feast:
        print("Feast skipped (--no-feast): the Feast ratio is not measured in this run.")
    else:
        py = ensure_feast_venv(args.feast_spec)
        feast_version = subprocess.run(
            [str(py), "-c", "import feast; print(feast.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        pythons["feast"] = str(py)
        names.append("feast")

    runs: dict[str, list[dict]] = {n: [] for n in names}
    version_before = code_version()
    outputs = {n: folder / f"out-{n}.parquet" for n in names}
    for r in range(args.repeat):
        for n in names:
            save = outputs[n] if r == 0 else None
            res = run_child(pythons[n], n, folder, save, args.timeout)
            runs[n].append(res)
            print(
                f"  run {r + 1}/{args.repeat} {n:<7} {res['wall']:8.2f} s  {res['rows']:>10,} rows"
            )

    anchor_wall = statistics.median(x["wall"] for x in runs["anchor"])
    print()
    version_after = code_version()
    print(
        f"lendml at {version_before}"
        + (
            ""
            if version_after == version_before
            else f" (changed during the runs: now {version_after})"
        )
    )
    print(
        f"point-in-time join: spine {spine_rows:,} rows x features {entities * args.per_entity:,} "
        f"rows ({entities:,} entities x {args.per_entity}, {N_FEATURES} float columns, "
        f"TTL {TTL_DAYS}d); median of {args.repeat}"
    )
    print(
        f"spine rows left null by the anchor (no earlier row, unseen key or past TTL): "
        f"{null_share(outputs['anchor']):.1%}"
    )
    labels = {
        "anchor": "hand-written DuckDB ASOF JOIN",
        "lendml": "lendml Project.training_set",
        "feast": f"Feast {feast_version} get_historical_features (DuckDB store)",
    }
    print(f"{'':<56}{'median s':>9}{'vs anchor':>11}{'rows':>12}{'peak RSS MB':>13}  values")
    for n in names:
        wall = statistics.median(x["wall"] for x in runs[n])
        rows = {x["rows"] for x in runs[n]}
        ok, note = (
            (True, "(reference)") if n == "anchor" else compare(outputs["anchor"], outputs[n])
        )
        rows_note = f"{next(iter(rows)):,}" if len(rows) == 1 else str(sorted(rows))
        if rows != {spine_rows}:
            note = f"ROW COUNT != spine ({spine_rows:,}); " + note
        print(
            f"{labels[n]:<56}{wall:>9.2f}{wall / anchor_wall:>10.2f}x{rows_note:>12}"
            f"{max(x['rss_mb'] for x in runs[n]):>13,.0f}  {note if ok else 'MISMATCH ' + note}"
        )
    lend = statistics.median(x["wall"] for x in runs["lendml"])
    ratio = lend / anchor_wall
    print()
    print(
        f"goal lendml <= 1.5x the ASOF JOIN: {ratio:.2f}x -> {'met' if ratio <= 1.5 else 'NOT met'}"
    )
    if "feast" in runs:
        speedup = statistics.median(x["wall"] for x in runs["feast"]) / lend
        print(
            f"goal lendml >= 10x faster than Feast: {speedup:.1f}x -> "
            f"{'met' if speedup >= 10 else 'NOT met'}"
        )
    else:
        print("goal lendml >= 10x faster than Feast: not measured (--no-feast)")
    paired = statistics.median(
        x["wall"] / a["wall"] for x, a in zip(runs["lendml"], runs["anchor"], strict=True)
    )
    line = (
        f"median of per-repeat ratios (less sensitive to load swings): lendml/anchor {paired:.2f}x"
    )
    if "feast" in runs:
        fl = statistics.median(
            f["wall"] / x["wall"] for f, x in zip(runs["feast"], runs["lendml"], strict=True)
        )
        line += f", Feast/lendml {fl:.2f}x"
    print(line)
    print(
        "runs (s): "
        + "; ".join(f"{n} " + ", ".join(f"{x['wall']:.2f}" for x in runs[n]) for n in names)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
