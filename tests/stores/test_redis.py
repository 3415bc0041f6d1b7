"""What only the Redis store has: URLs and credentials, namespaces, key layout, failures."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest

from lendml.core.config import ProjectConfig
from lendml.errors import ConfigError, DataValidationError, StoreError
from lendml.stores.base import OnlineRecord, OnlineStore, create_online_store
from lendml.stores.redis import RedisOnlineStore, mask_url
from tests.stores.conftest import REDIS_URL, delete_prefix

SECRET = "hunter2-not-a-real-secret"


def _full_text(exc: BaseException) -> str:
    """The message, context and whole traceback (with causes) a user could ever see."""
    return "".join(traceback.format_exception(exc)) + repr(getattr(exc, "context", {}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"redis://:{SECRET}@cache:6379/2", "redis://:***@cache:6379/2"),
        (f"redis://app:{SECRET}@cache/2", "redis://app:***@cache/2"),
        (f"redis://{SECRET}@cache", "redis://***@cache"),
        (
            f"rediss://app:{SECRET}@h:1/0?ssl_cert_reqs=none",
            "rediss://app:***@h:1/0?ssl_cert_reqs=none",
        ),
        (
            f"unix:///tmp/r.sock?db=3&password={SECRET}",
            "unix:///tmp/r.sock?db=3&password=%2A%2A%2A",
        ),
        (f"redis://app:p%40ss{SECRET}@h/0", "redis://app:***@h/0"),
    ],
)
def test_mask_url_hides_every_password(url, masked):
    assert mask_url(url) == masked
    assert SECRET not in mask_url(url)


def test_unreachable_server_is_a_store_error_without_the_password():
    url = f"redis://app:{SECRET}@127.0.0.1:{_free_port()}/0"
    with pytest.raises(StoreError) as info:
        RedisOnlineStore(url, timeout=2)
    err = info.value
    assert f"redis://app:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in str(err)
    assert "scripts/services.sh" in str(err) and "online_store.url" in str(err)
    assert SECRET not in _full_text(err)


@pytest.mark.parametrize(
    "url",
    [
        f"http://app:{SECRET}@127.0.0.1/0",
        f"redis://app:{SECRET}@127.0.0.1:notaport/0",
        "cache:6379",
    ],
)
def test_unusable_url_is_a_config_error_without_the_password(url):
    with pytest.raises(ConfigError, match=r"is not a usable Redis URL.*redis://\[\[user\]") as info:
        RedisOnlineStore(url)
    assert mask_url(url) in str(info.value)
    assert SECRET not in _full_text(info.value)


def test_bad_namespace_and_chunk_are_refused():
    with pytest.raises(ConfigError, match="namespace ''"):
        RedisOnlineStore(REDIS_URL, namespace="")
    with pytest.raises(ConfigError, match="chunk must be an int >= 1, got 0"):
        RedisOnlineStore(REDIS_URL, chunk=0)


def test_config_selects_the_redis_store(redis_url):
    cfg = ProjectConfig.model_validate({"online_store": {"type": "redis", "url": redis_url}})
    opts = cfg.online_store.model_dump(exclude={"type"})
    store = create_online_store(cfg.online_store.type, **opts)
    try:
        assert isinstance(store, RedisOnlineStore) and isinstance(store, OnlineStore)
        assert store.namespace == "lendml"
        assert repr(store) == f"RedisOnlineStore({redis_url!r}, namespace='lendml')"
    finally:
        store.close()
    with pytest.raises(ConfigError, match="'memcached' is not known.*'sqlite' or 'redis'"):
        create_online_store("memcached")


@pytest.fixture
def two_namespaces(redis_client):
    stores = [RedisOnlineStore(REDIS_URL, namespace=ns) for ns in ("lt-a", "lt-a:b")]
    yield stores
    for s in stores:
        s.close()
    for prefix in ("lt-a:", "lt-a%3Ab:"):
        delete_prefix(redis_client, prefix)


def test_namespaces_are_isolated_even_with_separators(two_namespaces, redis_client):
    a, ab = two_namespaces
    a.write_batch("b:v", [OnlineRecord(1, {"who": "a / b:v"}, 1)])
    ab.write_batch("v", [OnlineRecord(1, {"who": "a:b / v"}, 1)])
    assert a.read_many("b:v", [1])[0].values == {"who": "a / b:v"}
    assert ab.read_many("v", [1])[0].values == {"who": "a:b / v"}
    assert a.read_many("v", [1]) == [None] and ab.read_many("b:v", [1]) == [None]
    assert sorted(redis_client.keys("lt-a*")) == [b"lt-a%3Ab:v:1", b"lt-a:b%3Av:1"]


def test_key_layout_is_one_readable_hash_per_view_and_key(redis_store, redis_client):
    store = redis_store
    store.write_batch("spend", [OnlineRecord(42, {"n": 3, "avg": 0.5}, 1_700_000_000_000_000)])
    store.write_batch("spend", [OnlineRecord("42", {"n": 4}, 7)])
    prefix = store.key_prefix
    assert redis_client.hgetall(f"{prefix}spend:42") == {
        b"as_of_us": b"1700000000000000",
        b"values": b'{"n":3,"avg":0.5}',
    }
    assert redis_client.hgetall(f'{prefix}spend:"42"')[b"as_of_us"] == b"7"
    assert redis_client.ttl(f"{prefix}spend:42") == -1  # no TTL, as in the SQLite store


def test_unencodable_values_and_as_of_out_of_range_are_refused(redis_store):
    store = redis_store
    with pytest.raises(DataValidationError, match=r"Feature 'bad' of view 'v' for entity key 3"):
        store.write_batch("v", [OnlineRecord(3, {"ok": 1, "bad": {1, 2}}, 1)])
    with pytest.raises(DataValidationError, match=r"as_of_us 9223372036854775808 .* key 4"):
        store.write_batch("v", [OnlineRecord(4, {}, 2**63)])
    with pytest.raises(DataValidationError, match=r"Entity key \{1\}"):
        store.write_batch("v", [OnlineRecord({1}, {}, 1)])
    assert store.read_many("v", [3, 4]) == [None, None]


# ---------------------------------------------------------------------------- failures
# These run against a private server (a free port, a password) that the test may break.


def test_password_never_reaches_messages_or_logs(private_redis, caplog):
    caplog.set_level(logging.DEBUG, logger="lendml")
    store = RedisOnlineStore(private_redis.url, namespace="p")
    assert store.write_batch("v", [OnlineRecord(1, {"x": 1}, 1)]) == 1
    assert SECRET not in repr(store) and SECRET not in store.url
    wrong = private_redis.url.replace(SECRET, "wrong-password")
    with pytest.raises(StoreError, match=r"Cannot reach .*redis://:\*\*\*@127\.0\.0\.1") as info:
        RedisOnlineStore(wrong)
    assert "wrong-password" not in _full_text(info.value)
    private_redis.stop()  # the server goes away under a live store
    with pytest.raises(StoreError, match="applied whole or not at all") as w:
        store.write_batch("v", [OnlineRecord(1, {"x": 2}, 2)])
    with pytest.raises(
        StoreError, match=r"Reading 2 keys of view 'v' from Redis at 'redis://:\*\*\*@"
    ) as r:
        store.read_many("v", [1, 2])
    for err in (w.value, r.value):
        assert SECRET not in _full_text(err)
    assert "redis://:***@" in caplog.text
    assert SECRET not in caplog.text
    store.close()


def test_a_flushed_script_cache_does_not_break_writes(private_redis):
    store = RedisOnlineStore(private_redis.url, namespace="p")
    store.write_batch("v", [OnlineRecord(1, {"x": 1}, 1)])
    private_redis.client.script_flush()
    assert store.write_batch("v", [OnlineRecord(k, {"x": 2}, 2) for k in range(300)]) == 300
    assert store.read_many("v", [1])[0].values == {"x": 2}
    store.close()


def test_at_maxmemory_a_batch_is_refused_whole_and_reads_still_work(private_redis):
    store = RedisOnlineStore(private_redis.url, namespace="p", chunk=100)
    keys = list(range(1_000))
    store.write_batch("v", [OnlineRecord(k, {"x": "a" * 100}, 1) for k in keys])
    private_redis.client.config_set("maxmemory", "1mb")  # below what is already used
    with pytest.raises(StoreError, match="refused the batch of 5000 records .* applied none of it"):
        store.write_batch("v", [OnlineRecord(k, {"x": "b"}, 2) for k in range(5_000)])
    got = store.read_many("v", keys)  # the read script only reads: Redis still runs it
    assert {r.values["x"] for r in got} == {"a" * 100}
    assert store.read_many("v", [1])[0].values == {"x": "a" * 100}
    private_redis.client.config_set("maxmemory", "0")
    assert store.write_batch("v", [OnlineRecord(0, {"x": "c"}, 3)]) == 1
    store.close()


def test_a_foreign_value_in_the_namespace_is_reported(private_redis):
    store = RedisOnlineStore(private_redis.url, namespace="p")
    private_redis.client.set("p:v:5", "not a hash")
    # within one script call the stored values are all read before any write
    with pytest.raises(StoreError, match="failed while applying the batch of 10 records") as info:
        store.write_batch("v", [OnlineRecord(k, {"x": 1}, 1) for k in range(10)])
    assert "WRONGTYPE" in str(info.value)
    assert store.read_many("v", [0, 9]) == [None, None]
    with pytest.raises(StoreError, match=r"Reading key 'p:v:5' of view 'v'.*another program"):
        store.read_many("v", [4, 5])
    store.close()
