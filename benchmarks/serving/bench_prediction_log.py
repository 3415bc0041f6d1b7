"""Benchmark: the prediction log — records/s accepted by ``submit`` and written by each store.

Usage::

    python benchmarks/serving/bench_prediction_log.py [--records 50000] [--features 50]
        [--repeat 3] [--postgres-url postgresql://lendml:lendml@127.0.0.1:5432/lendml_test]

(``scripts/services.sh start postgres`` starts a throw-away PostgreSQL; without one, or
with ``--postgres-url ''``, the PostgreSQL rows are skipped. The URL may also come from
``LENDML_TEST_POSTGRES_URL``. A database of its own is made and dropped.)

Records look like a credit decision: one entity key, ``--features`` features (floats, a few
ints and strings, some missing), four reason codes for declines. Figures are medians over
``--repeat`` runs:

* **submit**: records/s that ``PredictionLog.submit`` accepts, from 1 and from 4 threads,
  with the writer thread running (the queue is large enough that nothing spills), and the
  p50/p99 latency of one call from one thread — the cost on the request path.
* **end to end**: records/s from the first ``submit`` to a ``flush`` that returns once every
  record is in the store (the writer encodes, batches and writes), per store.
* **store only**: records/s of ``LogStore.write_batch`` on batches encoded in advance, per
  store, beside an anchor that does the same job with the raw library and nothing else:
  ``pyarrow.parquet.write_table`` of the same Arrow table to one file (no partitioning,
  no temporary name, no fsync); ``COPY`` of the same rows into a plain table with psycopg
  (no staging table, no primary key, no conflict check).
* **read back**: records/s of ``PredictionLog.read()`` (what ``read_prediction_log``
  returns: one row per record, a column per feature) over the store-only run's records,
  beside ``pyarrow.parquet.read_table(...).to_pandas()`` of the same files, which leaves
  the features as JSON text (a floor: no parsing, no flattening).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from lendml.serving._predlog_base import encode, rows_to_table
from lendml.serving.prediction_log import (
    ParquetLogStore,
    PostgresLogStore,
    PredictionLog,
    redact,
)
from lendml.serving.records import PredictionRecord

BATCH = 1_000


def make_records(n: int, n_features: int, seed: int) -> list[PredictionRecord]:
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    out = []
    for i in range(n):
        features: dict[str, Any] = {}
        for j in range(n_features):
            if j % 10 == 9:
                features[f"f{j:03d}"] = rng.choice(["A", "B", "C", "D", None])
            elif j % 10 == 8:
                features[f"f{j:03d}"] = rng.randrange(0, 30)
            else:
                features[f"f{j:03d}"] = None if rng.random() < 0.02 else rng.random() * 100
        declined = rng.random() < 0.3
        out.append(
            PredictionRecord(
                request_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                time=t0 + timedelta(milliseconds=10 * i),
                model="credit_pd",
                version=3,
                entity={"customer_id": rng.randrange(10**7)},
                features=features,
                score=rng.uniform(300, 850),
                probability=rng.random(),
                decision="decline" if declined else "approve",
                reasons=[
                    {"code": f"R{k:02d}", "feature": f"f{k:03d}", "contribution": -0.1 * k}
                    for k in range(4)
                ]
                if declined
                else [],
            )
        )
    return out


def submit_rate(records: list[PredictionRecord], threads: int, tmp: Path) -> float:
    store = ParquetLogStore(tmp / f"submit-{uuid.uuid4().hex}")
    plog = PredictionLog(
        store, tmp / f"spool-{uuid.uuid4().hex}", queue_size=len(records) + 10, batch_rows=10_000
    )
    barrier = threading.Barrier(threads + 1)
    share = [records[k::threads] for k in range(threads)]

    def work(part: list[PredictionRecord]) -> None:
        barrier.wait()
        for r in part:
            plog.submit(r)

    pool = [threading.Thread(target=work, args=(p,)) for p in share]
    for t in pool:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    plog.close()
    if plog.stats().spooled:
        raise RuntimeError("records spilled to the spool: the queue was too small")
    return len(records) / elapsed


def submit_latency(records: list[PredictionRecord], tmp: Path) -> tuple[float, float]:
    plog = PredictionLog(
        ParquetLogStore(tmp / f"lat-{uuid.uuid4().hex}"),
        tmp / f"spool-{uuid.uuid4().hex}",
        queue_size=len(records) + 10,
    )
    times = []
    for r in records:
        t = time.perf_counter_ns()
        plog.submit(r)
        times.append(time.perf_counter_ns() - t)
    plog.close()
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def end_to_end(records: list[PredictionRecord], store: Any, tmp: Path, batch_rows: int) -> float:
    plog = PredictionLog(
        store,
        tmp / f"spool-{uuid.uuid4().hex}",
        queue_size=len(records) + 10,
        batch_rows=batch_rows,
    )
    began = time.perf_counter()
    for r in records:
        plog.submit(r)
    if not plog.flush(timeout=600):
        raise RuntimeError("the log did not flush within 600 s")
    elapsed = time.perf_counter() - began
    stats = plog.stats()
    plog.close()
    if stats.written != len(records):
        raise RuntimeError(f"wrote {stats.written} of {len(records)} records: {stats}")
    return len(records) / elapsed


def store_only(tables: list[Any], store: Any) -> float:
    began = time.perf_counter()
    n = 0
    for i, table in enumerate(tables):
        n += store.write_batch(table, batch_id=f"b{uuid.uuid4().hex}-{i:06d}")
    return n / (time.perf_counter() - began)


def read_back(store: Any, n: int, tmp: Path) -> float:
    plog = PredictionLog(store, tmp / f"spool-{uuid.uuid4().hex}", start=False)
    began = time.perf_counter()
    frame = plog.read()
    elapsed = time.perf_counter() - began
    if len(frame) != n:
        raise RuntimeError(f"read {len(frame)} of {n} records")
    return n / elapsed


def read_anchor(folder: Path, n: int) -> float:
    began = time.perf_counter()
    frame = pq.read_table(folder).to_pandas()
    elapsed = time.perf_counter() - began
    if len(frame) != n:
        raise RuntimeError(f"read {len(frame)} of {n} records")
    return n / elapsed


def parquet_anchor(tables: list[Any], folder: Path) -> float:
    folder.mkdir(parents=True)
    began = time.perf_counter()
    n = 0
    for i, table in enumerate(tables):
        pq.write_table(table, folder / f"{i:06d}.parquet", compression="zstd")
        n += table.num_rows
    return n / (time.perf_counter() - began)


def postgres_anchor(tables: list[Any], url: str) -> float:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE anchor (record_key text, request_id text, time timestamptz, "
            "model text, version bigint, role text, decision text, score double precision, "
            "probability double precision, reasons jsonb, entity jsonb, features jsonb)"
        )
        conn.commit()
        began = time.perf_counter()
        n = 0
        for table in tables:
            cols = [table[c].to_pylist() for c in table.column_names]
            with conn.cursor() as cur, cur.copy("COPY anchor FROM STDIN") as copy:
                for row in zip(*cols, strict=True):
                    copy.write_row(row)
            conn.commit()
            n += table.num_rows
        elapsed = time.perf_counter() - began
        conn.execute("DROP TABLE anchor")
    return n / elapsed


def postgres_database(server: str) -> tuple[str, str]:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"lendml_bench_predlog_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def drop_database(server: str, name: str) -> None:
    import psycopg

    # FORCE ends leftover connections of ours, not an autovacuum worker: wait that out.
    for attempt in range(40):
        try:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 39:
                raise
            time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "LENDML_TEST_POSTGRES_URL", "postgresql://lendml:lendml@127.0.0.1:5432/lendml_test"
        ),
    )
    args = parser.parse_args()
    records = make_records(args.records, args.features, args.seed)
    encode_began = time.perf_counter()
    rows = [encode(r) for r in records]
    encode_rate = len(rows) / (time.perf_counter() - encode_began)
    tables = [rows_to_table(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]
    print(
        f"prediction log: {args.records:,} records x {args.features} features, "
        f"batches of {BATCH:,}, median of {args.repeat} runs, {os.cpu_count()} CPUs"
    )
    print(f"  encode (record -> JSON row, writer thread): {encode_rate:,.0f} records/s")

    pg_server = args.postgres_url or None
    if pg_server:
        try:
            import psycopg

            psycopg.connect(pg_server, connect_timeout=3).close()
        except Exception as exc:
            print(f"  (no PostgreSQL at {redact(pg_server)}: {type(exc).__name__}; skipped)")
            pg_server = None

    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for rep in range(args.repeat):
            add("submit, 1 thread", submit_rate(records, 1, tmp))
            add("submit, 4 threads", submit_rate(records, 4, tmp))
            p50, p99 = submit_latency(records[: min(20_000, len(records))], tmp)
            add("submit p50 (us)", p50)
            add("submit p99 (us)", p99)
            add(
                "end to end, Parquet",
                end_to_end(records, ParquetLogStore(tmp / f"e2e-{rep}"), tmp, 10_000),
            )
            parquet = ParquetLogStore(tmp / f"so-{rep}")
            add("store only, Parquet", store_only(tables, parquet))
            add("anchor, pyarrow write_table", parquet_anchor(tables, tmp / f"anchor-{rep}"))
            add("read back, Parquet", read_back(parquet, len(records), tmp))
            add("anchor, pyarrow read_table", read_anchor(tmp / f"anchor-{rep}", len(records)))
            if pg_server:
                name, url = postgres_database(pg_server)
                try:
                    add(
                        "end to end, PostgreSQL",
                        end_to_end(records, PostgresLogStore(url, "e2e"), tmp, 1_000),
                    )
                    store = PostgresLogStore(url, "store_only")
                    add("store only, PostgreSQL", store_only(tables, store))
                    add("read back, PostgreSQL", read_back(store, len(records), tmp))
                    store.close()
                    add("anchor, psycopg COPY", postgres_anchor(tables, url))
                finally:
                    drop_database(pg_server, name)
    for name, values in results.items():
        unit = "" if "(us)" in name else " records/s"
        print(f"  {name:<32} {statistics.median(values):>12,.1f}{unit}")


if __name__ == "__main__":
    main()
