"""The integration tests' services: a real PostgreSQL, and fresh databases on it.

The server is the one at ``LENDML_TEST_POSTGRES_URL`` (default
``postgresql://lendml:lendml@127.0.0.1:5432/lendml_test``, the throw-away cluster that
``scripts/services.sh`` starts; its role may create databases). Each test that needs a
database gets one of its own with a random name, dropped afterwards, so reruns and
parallel workers never meet. Without a server the tests are skipped locally and fail on
CI (``CI=true``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from lendml.registry._backend import redact
from tests.conftest import ON_CI

POSTGRES_URL = os.environ.get(
    "LENDML_TEST_POSTGRES_URL", "postgresql://lendml:lendml@127.0.0.1:5432/lendml_test"
)


def with_driver(url: str) -> str:
    """``url`` for SQLAlchemy with the installed driver, psycopg2, named explicitly.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which the ``postgres``
    extra does not install (see test_a_bare_postgresql_uri_uses_the_installed_driver).
    """
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg2{sep}{rest}"
    return url


def on_database(url: str, name: str) -> str:
    """``url`` pointing at the database ``name`` on the same server, as the same role."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_password(url: str, password: str) -> str:
    """``url`` with its password replaced by ``password``."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{host}"))


def _connect(url: str):  # -> psycopg2 connection
    import psycopg2

    parts = urlsplit(url)
    return psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname=parts.path.lstrip("/") or "postgres",
        connect_timeout=3,
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL (libpq spelling); skipped locally without a server, a CI failure."""
    import psycopg2

    try:
        _connect(POSTGRES_URL).close()
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = (
            f"no PostgreSQL at {redact(POSTGRES_URL)} ({first}); start one with scripts/services.sh"
        )
        if ON_CI:
            pytest.fail(f"CI must have a PostgreSQL server: {msg}")
        pytest.skip(msg)
    return POSTGRES_URL


@pytest.fixture
def new_database(postgres_url: str) -> Iterator[Callable[[], str]]:
    """Make empty databases with unique names; return each one's SQLAlchemy URL.

    Every database made is dropped at teardown, with ``FORCE``: MLflow and Optuna keep
    pooled connections open for the life of the process.
    """
    made: list[str] = []

    def make() -> str:
        name = f"lendml_it_{uuid.uuid4().hex[:12]}"
        conn = _connect(postgres_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        made.append(name)
        return with_driver(on_database(postgres_url, name))

    yield make
    conn = _connect(postgres_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in made:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
