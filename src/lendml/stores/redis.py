"""Redis online store: the at-scale online store (one server, many readers and writers).

Layout: one Redis hash per (view, entity key), named ``<namespace>:<view>:<key>``, where
``<key>`` is the entity key as JSON (``lendml:spend:42``, ``lendml:spend:"42"``) and
``:`` and ``%`` in the namespace and view are escaped as ``%3A`` and ``%25``, so no two
(view, key) pairs share a hash. The hash holds two fields: ``as_of_us`` (a decimal
integer) and ``values`` (the feature values as one JSON object, encoded exactly as the
SQLite store encodes them, see :mod:`lendml.stores.base`).

Writes: a server-side Lua script compares each record's ``as_of_us`` with the stored one
(exact 64-bit integer order) and writes the record only if it is newer or equal — the
same rule as the SQLite store's upsert. A batch is one round trip: ``MULTI``, ``SCRIPT
LOAD`` of the script (a no-op when cached; it makes the batch immune to a flushed script
cache), ``EVALSHA`` calls of up to ``chunk`` records each, ``EXEC``. Redis runs the whole
transaction with no other client's command in between: a reader sees none or all of a
batch, and a connection lost before ``EXEC`` leaves the store untouched.

Reads: ``HMGET`` of both fields per key, in one round trip. Several keys are read by one
call of a read-only Lua script, so a read is a consistent snapshot (it never sees half of a
batch), and Redis serves it even at ``maxmemory``, when it refuses writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis

from lendml.errors import ConfigError, DataValidationError, StoreError
from lendml.stores.base import (
    OnlineRecord,
    OnlineStore,
    decode_values,
    encode_key,
    encode_values,
)

_log = logging.getLogger(__name__)

_AS_OF = b"as_of_us"
_VALUES = b"values"
_INT64 = (-(2**63), 2**63 - 1)

# KEYS[i]: the hash of record i; ARGV[2i-1]: its as_of_us (a decimal int64); ARGV[2i]: its
# JSON values. Lua numbers are doubles, exact only up to 2^53, so as_of values are compared
# as two exact halves of ten digits each. Returns how many records were written.
_WRITE_LUA = """
local function halves(s)
  local neg = string.sub(s, 1, 1) == '-'
  local digits = neg and string.sub(s, 2) or s
  digits = string.rep('0', 20 - #digits) .. digits
  local hi, lo = tonumber(string.sub(digits, 1, 10)), tonumber(string.sub(digits, 11))
  if neg then return -hi, -lo end
  return hi, lo
end
local function newer_or_equal(a, b)
  local ahi, alo = halves(a)
  local bhi, blo = halves(b)
  if ahi ~= bhi then return ahi > bhi end
  return alo >= blo
end
-- Read every stored as_of first: a key holding another type fails here, before any write.
local stored = {}
for _, key in ipairs(KEYS) do
  if stored[key] == nil then stored[key] = redis.call('HGET', key, 'as_of_us') end
end
local written = 0
for i, key in ipairs(KEYS) do
  local as_of = ARGV[2 * i - 1]
  if (not stored[key]) or newer_or_equal(as_of, stored[key]) then
    redis.call('HSET', key, 'as_of_us', as_of, 'values', ARGV[2 * i])
    stored[key] = as_of
    written = written + 1
  end
end
return written
"""

# KEYS: the hashes to read. One script call reads them all atomically (a snapshot) in one
# command, about twice as fast as a pipeline of HMGETs through redis-py; it only reads, so
# Redis runs it even at maxmemory. pcall: a key holding another type comes back as that
# key's error instead of failing the whole read.
_READ_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.pcall('HMGET', key, 'as_of_us', 'values')
end
return out
"""


def mask_url(url: str) -> str:
    """The URL with any password (in the user part or the query) replaced by ``***``.

    Examples
    --------
    >>> mask_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> mask_url("rediss://app:s3cret@cache/1?password=x&ssl_cert_reqs=none")
    'rediss://app:***@cache/1?password=%2A%2A%2A&ssl_cert_reqs=none'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        # "user:password" keeps the user; a lone "secret@" could be either: mask it all.
        user = userinfo.split(":", 1)[0] + ":" if ":" in userinfo else ""
        netloc = f"{user}***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if "password" in k.lower() else v) for k, v in pairs])
    # Not urlunsplit: it would turn "unix:///path" into "unix:/path".
    masked = f"{parts.scheme}://{netloc}{parts.path}" if "://" in url else url.split("?")[0]
    return (
        masked + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _secrets(url: str) -> list[str]:
    """The password-like pieces of ``url``, to scrub from any text we show."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", unquote(parts.password or "")]
        found += [v for k, v in parse_qsl(parts.query) if "password" in k.lower()]
    except ValueError:
        return [url]
    return [s for s in found if s]


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


class RedisOnlineStore(OnlineStore):
    """Features in Redis hashes, written by an atomic Lua upsert (see the module docstring).

    Parameters
    ----------
    url
        ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
        ``unix:///path/redis.sock?db=N``. Every message, log line and ``repr`` shows the URL
        with its password masked (``url`` holds the masked form); keep passwords out of
        committed files (see ``docs/online-stores.md``).
    namespace
        Prefix of every key, so several stores can share one database without sharing
        keys.
    timeout
        Seconds to wait for a connection and for each reply.
    chunk
        Records per Lua call inside a batch's transaction (bounds the arguments of one call;
        the batch stays one transaction whatever its size).

    Examples
    --------
    With a server on 127.0.0.1 (``scripts/services.sh`` starts one):

    >>> store = RedisOnlineStore("redis://127.0.0.1:6379/15", namespace="doc")
    >>> store.write_batch("spend", [OnlineRecord(42, {"n": 3}, 1_700_000_000_000_000)])
    1
    >>> store.read_many("spend", [42, "42"])
    [OnlineRecord(key=42, values={'n': 3}, as_of_us=1700000000000000), None]
    >>> store.close()
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "lendml",
        timeout: float = 30.0,
        chunk: int = 1000,
    ) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ConfigError(
                f"Redis online store namespace {namespace!r} must be a non-empty string, "
                "e.g. the project name."
            )
        if not (isinstance(chunk, int) and chunk >= 1):
            raise ConfigError(f"chunk must be an int >= 1, got {chunk!r}.")
        self.url = mask_url(url)
        self.namespace = namespace
        self.key_prefix = f"{_escape(namespace)}:"
        self._secrets = _secrets(url)
        self._chunk = chunk
        try:
            self._client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"online_store.url {self.url!r} is not a usable Redis URL "
                f"({self._scrub(exc)}): use redis://[[user]:password@]host[:port][/db], "
                "rediss:// for TLS, or unix:///path/redis.sock?db=N.",
                url=self.url,
            ) from None  # the original message may quote the URL with its password
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._client.close()
            raise StoreError(
                f"Cannot reach the Redis online store at {self.url!r}: {self._scrub(exc)}. "
                "Start Redis (scripts/services.sh starts one on 127.0.0.1:6379) or fix "
                "online_store.url in lendml.yaml.",
                url=self.url,
            ) from exc
        self._write_script = self._client.register_script(_WRITE_LUA)
        self._read_script = self._client.register_script(_READ_LUA)
        _log.debug("Redis online store at %s, namespace %r", self.url, namespace)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self.url!r}, namespace={self.namespace!r})"

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _hash_key(self, view_part: str, key: Any) -> bytes:
        return f"{self.key_prefix}{view_part}:{encode_key(key)}".encode()

    def write_batch(self, view: str, records: Sequence[OnlineRecord]) -> int:
        if not records:
            return 0
        view_part = _escape(view)
        keys: list[bytes] = []
        args: list[bytes] = []
        for r in records:
            as_of = int(r.as_of_us)
            if not _INT64[0] <= as_of <= _INT64[1]:
                raise DataValidationError(
                    f"as_of_us {as_of!r} of entity key {r.key!r} in view {view!r} is outside "
                    "the signed 64-bit range online stores keep: pass microseconds since "
                    "1970-01-01 UTC.",
                    feature_view=view,
                )
            keys.append(self._hash_key(view_part, r.key))
            args.append(str(as_of).encode())
            args.append(encode_values(r.values, view=view, key=r.key, compact=True).encode())
        what = f"{len(records)} records of view {view!r}"
        try:
            with self._client.pipeline(transaction=True) as pipe:
                # SCRIPT LOAD inside the transaction: the EVALSHAs after it find the script
                # even if the server's script cache was flushed since the last batch, and
                # no SCRIPT EXISTS round trip is needed before it.
                pipe.script_load(self._write_script.script)
                sha = self._write_script.sha
                for i in range(0, len(keys), self._chunk):
                    part = keys[i : i + self._chunk]
                    pipe.evalsha(sha, len(part), *part, *args[2 * i : 2 * (i + self._chunk)])
                # Errors of commands run by EXEC come back in the list; an error raised
                # here means Redis refused to queue a command (e.g. at maxmemory) and
                # discarded the whole transaction (EXECABORT).
                replies = pipe.execute(raise_on_error=False)
        except redis.ResponseError as exc:
            raise StoreError(
                f"Redis at {self.url!r} refused the batch of {what} and applied none of it: "
                f"{self._scrub(exc)}. Fix the cause (e.g. raise maxmemory) and write it again.",
                feature_view=view,
                url=self.url,
            ) from exc
        except redis.RedisError as exc:
            raise StoreError(
                f"Writing {what} to Redis at {self.url!r} failed: {self._scrub(exc)}. The "
                "batch is one transaction, applied whole or not at all; writing it again is "
                "safe.",
                feature_view=view,
                url=self.url,
            ) from exc
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            # Only a server-side failure while EXEC runs gets here (e.g. a key of this
            # namespace that another program overwrote with a non-hash value).
            raise StoreError(
                f"Redis at {self.url!r} failed while applying the batch of {what}: "
                f"{self._scrub(failed[0])}. Part of the batch may be applied; fix the cause "
                "and write the batch again (rewriting the same batch is idempotent).",
                feature_view=view,
                url=self.url,
            ) from failed[0]
        return sum(int(c) for c in replies[1:])

    def read_many(self, view: str, keys: Sequence[Any]) -> list[OnlineRecord | None]:
        if not len(keys):
            return []
        view_part = _escape(view)
        hashes = [self._hash_key(view_part, k) for k in keys]
        try:
            if len(hashes) == 1:
                replies = [self._client.hmget(hashes[0], _AS_OF, _VALUES)]
            else:
                replies = self._read_script(keys=hashes)
        except redis.RedisError as exc:
            raise StoreError(
                f"Reading {len(hashes)} keys of view {view!r} from Redis at {self.url!r} "
                f"failed: {self._scrub(exc)}.",
                feature_view=view,
                url=self.url,
            ) from exc
        out: list[OnlineRecord | None] = []
        for key, h, reply in zip(keys, hashes, replies, strict=True):
            if isinstance(reply, Exception):
                raise StoreError(
                    f"Reading key {h.decode()!r} of view {view!r} from Redis at {self.url!r} "
                    f"failed: {self._scrub(reply)}. Keys under the namespace "
                    f"{self.namespace!r} belong to the online store; another program may have "
                    "written there.",
                    feature_view=view,
                    url=self.url,
                ) from reply
            as_of, payload = reply
            if as_of is None or payload is None:
                out.append(None)
            else:
                out.append(OnlineRecord(key, decode_values(payload), int(as_of)))
        return out

    def close(self) -> None:
        self._client.close()
