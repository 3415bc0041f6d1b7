"""Online stores under test: a factory of fresh, isolated stores per kind.

The Redis stores use a real server at ``LENDML_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``; ``scripts/services.sh`` starts one). Each store gets its own
namespace, and only keys under the namespaces a test created are deleted. Without a server
the Redis tests are skipped locally and fail on CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from lendml.stores.base import OnlineStore, create_online_store
from lendml.stores.redis import mask_url
from tests.conftest import ON_CI

REDIS_URL = os.environ.get("LENDML_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KINDS = ("sqlite", "redis")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key starting with ``prefix``; return how many."""
    keys = list(client.scan_iter(match=glob_escape(prefix) + "*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])
    return len(keys)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test server's URL; skipped locally without a server, a failure on CI."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        msg = f"no Redis at {mask_url(REDIS_URL)} ({exc}); start one with scripts/services.sh"
        if ON_CI:
            pytest.fail(f"CI must have a Redis server: {msg}")
        pytest.skip(msg)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class StoreFactory:
    """Makes fresh, empty stores of one kind; deletes what they wrote at teardown."""

    def __init__(self, kind: str, tmp_path: Path, client: redis.Redis | None) -> None:
        self.kind = kind
        self._tmp = tmp_path
        self._client = client
        self._prefixes: list[str] = []
        self._stores: list[OnlineStore] = []

    def new_options(self) -> dict[str, Any]:
        """Options for ``create_online_store`` naming a store no one has used yet."""
        tag = uuid.uuid4().hex[:12]
        if self.kind == "sqlite":
            return {"path": str(self._tmp / f"online-{tag}.db")}
        self._prefixes.append(f"lendml-test-{tag}:")
        # A small chunk: every batch of more than 64 records spans several Lua calls, so
        # the tests see that the MULTI transaction, not one script call, makes it atomic.
        return {"url": REDIS_URL, "namespace": f"lendml-test-{tag}", "chunk": 64}

    def open(self, options: dict[str, Any]) -> OnlineStore:
        store = create_online_store(self.kind, **options)
        self._stores.append(store)
        return store

    def __call__(self) -> OnlineStore:
        return self.open(self.new_options())

    def cleanup(self) -> None:
        for store in self._stores:
            store.close()
        if self._client is not None:
            for prefix in self._prefixes:
                delete_prefix(self._client, prefix)


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    client = request.getfixturevalue("redis_client") if request.param == "redis" else None
    factory = StoreFactory(request.param, tmp_path, client)
    yield factory
    factory.cleanup()


@pytest.fixture
def store(make_store: StoreFactory) -> OnlineStore:
    return make_store()


@pytest.fixture
def redis_store(redis_client: redis.Redis, tmp_path: Path) -> Iterator[OnlineStore]:
    """A fresh Redis store in its own namespace (for tests of Redis-only behaviour)."""
    factory = StoreFactory("redis", tmp_path, redis_client)
    yield factory()
    factory.cleanup()


class PrivateRedis:
    """A redis-server of our own on a free port, with a password, for failure tests."""

    password = "hunter2-not-a-real-secret"

    def __init__(self, binary: str, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                self.password,
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A fresh server this test may break; skipped locally without redis-server, a CI failure."""
    binary = shutil.which("redis-server")
    if binary is None:
        if ON_CI:
            pytest.fail("CI must have redis-server (.ci/run installs it)")
        pytest.skip("redis-server is not installed; scripts/services.sh installs it")
    server = PrivateRedis(binary, tmp_path)
    yield server
    server.stop()
