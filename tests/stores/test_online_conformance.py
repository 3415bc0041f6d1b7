"""One conformance suite for every online store: SQLite and Redis read back the same.

Each test runs once per store kind (see ``conftest.py``). Expected values are written out
by hand or computed by a plain-dict reference model, never by the stores' own encoders.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing as mp
import threading
import time
import uuid
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lendml.errors import DataValidationError
from lendml.stores.base import OnlineRecord, OnlineStore, create_online_store
from tests.stores import concurrent_writer
from tests.stores.conftest import REDIS_URL, delete_prefix


def assert_same(got: Any, want: Any, where: str = "value") -> None:
    """Equal *and* of the same type, with floats equal to the bit (-0.0 is not 0.0)."""
    assert type(got) is type(want), f"{where}: {got!r} ({type(got).__name__}) != {want!r}"
    if isinstance(want, float):
        assert repr(got) == repr(want), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def values_of(store: OnlineStore, view: str, keys: list[Any]) -> list[tuple[int, dict] | None]:
    return [None if r is None else (r.as_of_us, r.values) for r in store.read_many(view, keys)]


# ---------------------------------------------------------------------------- round trip

MIXED = {
    "int": 7,
    "neg_int": -123456789,
    "big_int": 2**70 + 1,  # beyond int64: JSON keeps it exact
    "float": 0.1,
    "neg_zero": -0.0,
    "huge": 1.7976931348623157e308,
    "tiny": 5e-324,  # the smallest subnormal
    "third": 1 / 3,
    "inf": math.inf,
    "neg_inf": -math.inf,
    "nan": math.nan,
    "none": None,
    "true": True,
    "false": False,
    "text": 'zé 🚀 ∑ \u0000 "quoted" a:b|c',
    "empty": "",
    "np_int": np.int64(-5),
    "np_float32": np.float32(0.1),
    "np_bool": np.bool_(True),
    "np_nan": np.float64("nan"),
    "ts_utc": pd.Timestamp("2024-01-02 03:04:05.123456", tz="UTC"),
    "dt_naive": dt.datetime(2024, 1, 2, 3, 4, 5),
    "date": dt.date(2024, 2, 29),
    "list": [1, 2.5, "x", None],
    "nested": {"a": [True, {"b": -0.0}]},
}
# What every store must read back: NaN -> None (a missing value), numpy -> Python scalars,
# timestamps -> ISO-8601 text, everything else exactly as written.
MIXED_READ = {
    **MIXED,
    "nan": None,
    "np_int": -5,
    "np_float32": float(np.float32(0.1)),  # 0.10000000149011612: the float32 value, exactly
    "np_bool": True,
    "np_nan": None,
    "ts_utc": "2024-01-02T03:04:05.123456+00:00",
    "dt_naive": "2024-01-02T03:04:05",
    "date": "2024-02-29",
}


def test_round_trip_of_mixed_types(store):
    assert store.write_batch("mixed", [OnlineRecord(1, MIXED, 1_700_000_000_000_001)]) == 1
    (rec,) = store.read_many("mixed", [1])
    assert rec is not None
    assert rec.key == 1 and rec.as_of_us == 1_700_000_000_000_001
    assert_same(rec.values, MIXED_READ)
    assert math.copysign(1.0, rec.values["neg_zero"]) == -1.0


def test_numpy_and_python_keys_are_the_same_key(store):
    store.write_batch("v", [OnlineRecord(np.int64(7), {"x": 1}, 5)])
    assert values_of(store, "v", [7, "7", 7.0]) == [(5, {"x": 1}), None, None]


# ---------------------------------------------------------------------------- upserts


def test_newer_wins_older_is_ignored_equal_replaces(store):
    assert store.write_batch("v", [OnlineRecord("k", {"a": 1, "b": 2}, 100)]) == 1
    assert store.write_batch("v", [OnlineRecord("k", {"a": 2, "b": 3}, 200)]) == 1
    assert values_of(store, "v", ["k"]) == [(200, {"a": 2, "b": 3})]
    # an older backfill never overwrites newer values
    assert store.write_batch("v", [OnlineRecord("k", {"a": 99}, 150)]) == 0
    assert values_of(store, "v", ["k"]) == [(200, {"a": 2, "b": 3})]
    # the same as-of time replaces the values wholesale (no feature of the old row is kept)
    assert store.write_batch("v", [OnlineRecord("k", {"c": "tie"}, 200)]) == 1
    assert values_of(store, "v", ["k"]) == [(200, {"c": "tie"})]


def test_records_of_one_batch_apply_in_order(store):
    batch = [
        OnlineRecord("k", {"x": "a"}, 300),
        OnlineRecord("k", {"x": "older"}, 250),  # ignored: 300 is stored by now
        OnlineRecord("j", {"x": "j"}, 1),
        OnlineRecord("k", {"x": "c"}, 300),  # a tie: the later record wins
    ]
    assert store.write_batch("v", batch) == 3
    assert values_of(store, "v", ["k", "j"]) == [(300, {"x": "c"}), (1, {"x": "j"})]


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        (2**53 + 1, 2**53, 2**53 + 1),  # beyond a double's exact integers
        (2**53, 2**53 + 1, 2**53 + 1),
        (2**63 - 1, 2**63 - 2, 2**63 - 1),
        (-(2**63), -(2**63) + 1, -(2**63) + 1),
        (-5, -6, -5),
        (-1, 1, 1),
        (-(10**10) + 1, -(10**10), -(10**10) + 1),  # across the script's ten-digit halves
        (10**10, 10**10 - 1, 10**10),
        (0, -1, 0),
    ],
)
def test_as_of_order_is_exact_over_64_bits(store, first, second, kept):
    store.write_batch("v", [OnlineRecord(1, {"t": str(first)}, first)])
    written = store.write_batch("v", [OnlineRecord(1, {"t": str(second)}, second)])
    assert written == (1 if kept == second else 0)
    assert values_of(store, "v", [1]) == [(kept, {"t": str(kept)})]


# ---------------------------------------------------------------------------- keys


def test_missing_keys_read_as_none_in_order(store):
    assert store.read_many("v", []) == []
    assert store.write_batch("v", []) == 0
    store.write_batch("v", [OnlineRecord(2, {"x": 2}, 10)])
    out = store.read_many("v", [1, 2, 3, 2, "2"])
    assert [None if r is None else r.key for r in out] == [None, 2, None, 2, None]
    assert store.read_many("other_view", [2]) == [None]


KEYS: list[Any] = [
    7,
    "7",
    7.5,
    7.0,
    True,
    None,
    "a:b",
    "a|b",
    ["a", "b"],
    ["a:b"],
    "a",
    "b",
    'a"b',
    "a\\b",
    "",
    " ",
    ":",
    "|",
    "%3A",
    "a:b|c",
    "lendml:v:7",
    "v:7",
    "ünïcødé",
]


def test_keys_with_separators_and_types_never_collide(store):
    store.write_batch("v", [OnlineRecord(k, {"i": i}, 1) for i, k in enumerate(KEYS)])
    assert values_of(store, "v", KEYS) == [(1, {"i": i}) for i in range(len(KEYS))]


def test_views_with_separators_never_collide(store):
    pairs = [
        ("v", "1:x"),
        ("v:1", "x"),
        ("v%3A1", "x"),
        ("v|1", "x"),
        ("v", "1|x"),
        ("a:b", "c"),
        ("a", "b:c"),
        ("a%b", "c"),
        ("ünï", 1),
    ]
    for i, (view, key) in enumerate(pairs):
        assert store.write_batch(view, [OnlineRecord(key, {"i": i}, 1)]) == 1
    for i, (view, key) in enumerate(pairs):
        assert values_of(store, view, [key]) == [(1, {"i": i})]


# ---------------------------------------------------------------------------- batches


def test_large_batch(store):
    n = 12_000
    batch = [OnlineRecord(k, {"k": k, "half": k / 2, "s": f"e{k}"}, 1_000 + k) for k in range(n)]
    assert store.write_batch("big", batch) == n
    keys = list(range(-5, n + 5))
    got = values_of(store, "big", keys)
    assert got == [
        (1_000 + k, {"k": k, "half": k / 2, "s": f"e{k}"}) if 0 <= k < n else None for k in keys
    ]
    # replaying it one microsecond older writes nothing
    older = [OnlineRecord(r.key, {"k": -1}, r.as_of_us - 1) for r in batch]
    assert store.write_batch("big", older) == 0
    assert values_of(store, "big", [0, n - 1]) == [got[5], got[-6]]


def test_a_failing_batch_writes_nothing(store):
    store.write_batch("v", [OnlineRecord(k, {"x": "before"}, 10) for k in range(3)])
    batch = [OnlineRecord(k, {"x": "after"}, 20) for k in range(6_000)]
    batch[4_000] = OnlineRecord(4_000, {"x": object()}, 20)  # not encodable
    # SQLite raises the json module's TypeError, Redis a DataValidationError naming the feature
    with pytest.raises((DataValidationError, TypeError)):
        store.write_batch("v", batch)
    assert values_of(store, "v", [0, 1, 2, 3, 5_999]) == [(10, {"x": "before"})] * 3 + [None] * 2


def test_readers_never_see_half_a_batch(store):
    keys = list(range(500))  # within one SQLite statement, so both stores read a snapshot
    store.write_batch("v", [OnlineRecord(k, {"b": 0}, 0) for k in keys])
    stop = threading.Event()
    seen: list[set[int]] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append({r.as_of_us for r in store.read_many("v", keys)})

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for b in range(1, 31):
            store.write_batch("v", [OnlineRecord(k, {"b": b}, b) for k in keys])
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join()
    assert len(seen) >= 3, "the reader did not overlap the writer"
    mixed = [s for s in seen if len(s) != 1]
    assert not mixed, f"{len(mixed)} of {len(seen)} reads saw a half-applied batch: {mixed[0]}"
    assert values_of(store, "v", [0, 499]) == [(30, {"b": 30})] * 2


def test_concurrent_writers_in_two_processes_converge(make_store):
    options = make_store.new_options()
    store = make_store.open(options)
    # fork: the writers start in milliseconds instead of importing lendml afresh; each opens
    # its own store (its own connection) after the fork.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(
            target=concurrent_writer.write,
            args=(make_store.kind, options, parity, barrier, results),
        )
        for parity in (0, 1)
    ]
    with warnings.catch_warnings():
        # Python 3.12+ warns that fork() in a process with threads may deadlock; the
        # children only run the writer above, which takes no lock the parent can hold.
        warnings.simplefilter("ignore", DeprecationWarning)
        for p in procs:
            p.start()
    barrier.wait(timeout=60)  # both writers start at once
    reports = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [r[3] for r in reports] == [None, None], [r[3] for r in reports]
    assert [p.exitcode for p in procs] == [0, 0]
    # the writers overlapped: neither finished before the other began
    (_, s0, e0, _), (_, s1, e1, _) = reports
    assert s0 < e1 and s1 < e0
    want: dict[int, tuple[int, dict]] = {}
    for parity in (0, 1):
        for batch in concurrent_writer.batches(parity):
            for key, as_of in batch:
                if key not in want or as_of >= want[key][0]:
                    want[key] = (as_of, {"writer": parity, "t": as_of})
    keys = list(range(concurrent_writer.N_KEYS))
    assert values_of(store, "conc", keys) == [want.get(k) for k in keys]
    assert {v[1]["writer"] for v in want.values()} == {0, 1}


# ---------------------------------------------------------------------------- property

KEY_ST = st.one_of(st.integers(-2, 2), st.sampled_from(["a", "a:b", "a|b", "1", "", "ü"]))
AS_OF_ST = st.one_of(st.integers(-3, 3), st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, -(2**63)]))
VALUE_ST = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
)
VALUES_ST = st.dictionaries(st.sampled_from(["x", "y", "z:w"]), VALUE_ST, max_size=3)
BATCHES_ST = st.lists(
    st.lists(st.tuples(KEY_ST, AS_OF_ST, VALUES_ST), max_size=8), min_size=1, max_size=6
)


def _ref_key(key: Any) -> str:
    return f"{type(key).__name__}:{key!r}"


def _missing_as_none(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _apply(store: OnlineStore, batches: list) -> dict[str, tuple[Any, int, dict]]:
    """Write ``batches`` to ``store`` and to a dict model; check each batch's count."""
    model: dict[str, tuple[Any, int, dict]] = {}
    for batch in batches:
        written = 0
        for key, as_of, values in batch:
            held = model.get(_ref_key(key))
            if held is None or as_of >= held[1]:
                model[_ref_key(key)] = (
                    key,
                    as_of,
                    {k: _missing_as_none(v) for k, v in values.items()},
                )
                written += 1
        assert store.write_batch("p", [OnlineRecord(k, v, t) for k, t, v in batch]) == written
    return model


def _read_all(store: OnlineStore, keys: list[Any]) -> list[Any]:
    return [None if r is None else (r.as_of_us, r.values) for r in store.read_many("p", keys)]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=BATCHES_ST)
def test_any_write_sequence_reads_as_the_reference_model(make_store, batches):
    store = make_store()
    model = _apply(store, batches)
    keys = [k for k, _, _ in model.values()] + ["never-written"]
    got = _read_all(store, keys)
    want = [(t, v) for _, t, v in model.values()] + [None]
    for g, w in zip(got, want, strict=True):
        assert_same(g is None, w is None)
        if w is not None:
            assert g[0] == w[0]
            assert_same(g[1], w[1])
    store.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=BATCHES_ST)
def test_sqlite_and_redis_read_the_same(tmp_path, redis_client, batches):
    tag = uuid.uuid4().hex[:12]
    sqlite = create_online_store("sqlite", path=str(tmp_path / f"{tag}.db"))
    redis = create_online_store("redis", url=REDIS_URL, namespace=f"lendml-test-{tag}")
    try:
        model = _apply(sqlite, batches)
        assert _apply(redis, batches) == model
        keys = [k for k, _, _ in model.values()] + ["never-written"]
        sqlite_reads, redis_reads = _read_all(sqlite, keys), _read_all(redis, keys)
        assert [r is None for r in sqlite_reads] == [r is None for r in redis_reads]
        for a, b in zip(sqlite_reads, redis_reads, strict=True):
            if a is not None:
                assert a[0] == b[0]
                assert_same(b[1], a[1])
    finally:
        sqlite.close()
        redis.close()
        delete_prefix(redis_client, f"lendml-test-{tag}:")
