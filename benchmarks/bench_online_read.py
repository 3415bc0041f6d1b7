"""Benchmark: online-store reads (SQLite and Redis) against raw-client anchors.

Usage::

    scripts/services.sh   # a Redis on 127.0.0.1:6379
    python benchmarks/bench_online_read.py [--entities 100000] [--repeat 5]
        [--redis-url redis://127.0.0.1:6379/15]

Both stores are filled with the same ``--entities`` records (ten features: ints, floats,
a string, a null). Then, for each store and its anchor, interleaved within each repeat:

* single-entity reads: ``--singles`` calls of ``read_many(view, [key])`` on random keys,
  timed one by one -> p50 and p99 latency;
* batch reads: ``--batches`` calls of ``read_many(view, keys)`` with 1,000 random keys ->
  entities per second.

Anchors do the same job with the raw client and nothing else: sqlite3 ``SELECT ... WHERE
view = ? AND entity_key IN (...)`` (900 keys per statement) and redis-py ``HMGET`` pipelines
(no ``MULTI``), each decoding the JSON payloads to dicts as the stores do. Figures are
medians over repeats. Writes (entities/s of one ``write_batch``) are printed for
reference. The Redis keys are written under a fresh namespace and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from lendml.stores.base import OnlineRecord, encode_key
from lendml.stores.redis import RedisOnlineStore, mask_url
from lendml.stores.sqlite import SQLiteOnlineStore

VIEW = "bench"
BATCH = 1_000


def records(n: int, seed: int) -> list[OnlineRecord]:
    rng = random.Random(seed)
    return [
        OnlineRecord(
            k,
            {
                "nb_tx_1d": rng.randrange(20),
                "nb_tx_7d": rng.randrange(100),
                "sum_30d": round(rng.gammavariate(2, 500), 2),
                "avg_7d": rng.random() * 300,
                "max_30d": rng.random() * 3000,
                "last_amount": round(rng.random() * 500, 2),
                "fico": rng.randrange(300, 850),
                "utilization": rng.random(),
                "segment": rng.choice(["prime", "near_prime", "subprime"]),
                "months_since_delinquency": None,
            },
            1_700_000_000_000_000,
        )
        for k in range(n)
    ]


def single_latencies(read_one: Callable[[int], Any], keys: list[int]) -> tuple[float, float]:
    """p50 and p99 of one-key reads, in microseconds."""
    times = []
    for k in keys:
        t = time.perf_counter_ns()
        read_one(k)
        times.append((time.perf_counter_ns() - t) / 1_000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def batch_rate(read_keys: Callable[[list[int]], Any], batches: list[list[int]]) -> float:
    """Entities per second over all batches."""
    t = time.perf_counter()
    for b in batches:
        read_keys(b)
    return sum(map(len, batches)) / (time.perf_counter() - t)


class RawSQLite:
    """The anchor: sqlite3 queries on the store's table, payloads decoded."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(path, isolation_level=None)

    def one(self, key: int) -> Any:
        row = self.con.execute(
            "SELECT as_of_us, payload FROM features WHERE view = ? AND entity_key = ?",
            (VIEW, encode_key(key)),
        ).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def many(self, keys: list[int]) -> Any:
        encoded = [encode_key(k) for k in keys]
        found = {}
        for i in range(0, len(encoded), 900):
            part = encoded[i : i + 900]
            sql = (
                "SELECT entity_key, as_of_us, payload FROM features "
                f"WHERE view = ? AND entity_key IN ({','.join('?' * len(part))})"
            )
            for ek, a, p in self.con.execute(sql, [VIEW, *part]):
                found[ek] = (a, json.loads(p))
        return [found.get(e) for e in encoded]


class RawRedis:
    """The anchor: redis-py HMGET (pipelined for many keys), payloads decoded."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix

    def _key(self, k: int) -> str:
        return f"{self.prefix}{VIEW}:{encode_key(k)}"

    def one(self, key: int) -> Any:
        a, p = self.client.hmget(self._key(key), "as_of_us", "values")
        return None if a is None else (int(a), json.loads(p))

    def many(self, keys: list[int]) -> Any:
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(self._key(k), "as_of_us", "values")
        return [None if a is None else (int(a), json.loads(p)) for a, p in pipe.execute()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--singles", type=int, default=2_000)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    recs = records(args.entities, args.seed)
    rng = random.Random(args.seed + 1)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "online.db"
        sqlite_store = SQLiteOnlineStore(path=str(path))
        redis_store = RedisOnlineStore(args.redis_url, namespace=namespace)
        try:
            writes = {}
            for name, store in (("sqlite", sqlite_store), ("redis", redis_store)):
                t = time.perf_counter()
                assert store.write_batch(VIEW, recs) == len(recs)
                writes[name] = len(recs) / (time.perf_counter() - t)
            raw = {
                "sqlite": RawSQLite(path),
                "redis": RawRedis(args.redis_url, redis_store.key_prefix),
            }
            stores = {"sqlite": sqlite_store, "redis": redis_store}
            results: dict[str, dict[str, list[float]]] = {
                f"{n}{suffix}": {"p50": [], "p99": [], "rate": []}
                for n in stores
                for suffix in ("", " (raw)")
            }
            for _ in range(args.repeat):
                singles = [rng.randrange(args.entities) for _ in range(args.singles)]
                batches = [rng.sample(range(args.entities), BATCH) for _ in range(args.batches)]
                for name, store in stores.items():
                    for label, one, many in (
                        (
                            name,
                            lambda k, s=store: s.read_many(VIEW, [k]),
                            lambda ks, s=store: s.read_many(VIEW, ks),
                        ),
                        (f"{name} (raw)", raw[name].one, raw[name].many),
                    ):
                        p50, p99 = single_latencies(one, singles)
                        results[label]["p50"].append(p50)
                        results[label]["p99"].append(p99)
                        results[label]["rate"].append(batch_rate(many, batches))
        finally:
            sqlite_store.close()
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=f"{namespace}:*", count=5_000))
            for i in range(0, len(keys), 5_000):
                client.unlink(*keys[i : i + 5_000])
            client.close()
            redis_store.close()

    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in results.items()}
    print(
        f"{args.entities:,} entities x 10 features; median of {args.repeat} repeats; "
        f"{args.singles:,} single reads and {args.batches} batches of {BATCH:,} keys per repeat; "
        f"Redis at {mask_url(args.redis_url)}"
    )
    print(f"{'':14} {'single p50':>11} {'single p99':>11} {'1k-key batch':>16}")
    for name in ("sqlite", "redis"):
        for label in (name, f"{name} (raw)"):
            m = med[label]
            print(f"{label:14} {m['p50']:9.1f}us {m['p99']:9.1f}us {m['rate']:12,.0f} ent/s")
        s, r = med[name], med[f"{name} (raw)"]
        print(
            f"{'  ratio':14} {s['p50'] / r['p50']:10.2f}x {s['p99'] / r['p99']:10.2f}x "
            f"{r['rate'] / s['rate']:15.2f}x  (store / raw; time, so lower is better)"
        )
    print(
        f"write_batch of all {args.entities:,}: sqlite {writes['sqlite']:,.0f} ent/s, "
        f"redis {writes['redis']:,.0f} ent/s"
    )


if __name__ == "__main__":
    main()
