"""API keys of the scoring service: created once, stored hashed, checked in constant time.

A key is a random 256-bit token (``lmk_`` + 43 URL-safe characters) shown once, when it
is created. The keys file (``serving.keys_file``, default ``data/api_keys.json``) keeps
only its sha256 — a random token of that entropy needs no slow password hash — with an
id, a name, a scope and the creation and revocation times. The file is written
atomically with mode 0600. A service re-reads it when it changes, so a revoked key stops
working without a restart.

Scopes: ``score`` (scoring, model status, metrics) and ``admin`` (also reload, shadow and
canary settings).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lendml.errors import ConfigError, NotFoundError, StoreError

Scope = Literal["score", "admin"]
SCOPES: tuple[Scope, ...] = ("score", "admin")
PREFIX = "lmk_"
_FORMAT = 1


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: never the token itself."""

    id: str
    name: str
    scope: Scope
    sha256: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None

    def allows(self, scope: Scope) -> bool:
        """True if this key may act in ``scope`` (admin keys may also score)."""
        return self.active and (self.scope == "admin" or scope == "score")

    def describe(self) -> dict[str, Any]:
        """What ``lendml keys list`` shows (no hash)."""
        return {k: v for k, v in asdict(self).items() if k != "sha256"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class KeyStore:
    """The keys file: create, list, revoke, and check a presented token.

    Parameters
    ----------
    path
        The keys file (created by the first :meth:`create`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> keys = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.json")
    >>> token, key = keys.create(scope="score", name="web")
    >>> keys.verify(token).id == key.id, keys.verify("lmk_wrong")
    (True, None)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: tuple[ApiKey, ...] = ()

    # ------------------------------------------------------------------ file
    def _read(self) -> tuple[ApiKey, ...]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return ()
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"Keys file {str(self.path)!r} cannot be read ({exc}); restore it or create "
                "new keys with `lendml keys create`.",
                path=str(self.path),
            ) from exc
        try:
            return tuple(ApiKey(**k) for k in data["keys"])
        except (KeyError, TypeError) as exc:
            raise StoreError(
                f"Keys file {str(self.path)!r} is not a lendml keys file ({exc}).",
                path=str(self.path),
            ) from exc

    def _write(self, keys: tuple[ApiKey, ...]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": _FORMAT, "keys": [asdict(k) for k in keys]}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list_keys(self) -> tuple[ApiKey, ...]:
        """Every key, re-read when the file changed since the last call."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp or stamp is None:
            with self._lock:
                self._keys = self._read()
                self._stamp = stamp
        return self._keys

    # ------------------------------------------------------------------ actions
    def create(self, *, scope: str, name: str | None = None) -> tuple[str, ApiKey]:
        """Make a key; return the token (shown once, never stored) and its record.

        Raises
        ------
        ConfigError
            ``scope`` is not ``score`` or ``admin``.
        """
        if scope not in SCOPES:
            raise ConfigError(f"Key scope {scope!r} is not valid; use one of: {', '.join(SCOPES)}.")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            keys = self._read()
            key_id = secrets.token_hex(4)
            while any(k.id == key_id for k in keys):
                key_id = secrets.token_hex(4)
            key = ApiKey(
                id=key_id,
                name=(name or "").strip() or f"key-{key_id}",
                scope=scope,  # type: ignore[arg-type]
                sha256=_digest(token),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self._write((*keys, key))
            self._stamp = None
        return token, key

    def revoke(self, key: str) -> ApiKey:
        """Revoke the key with this id or name (kept in the file, marked revoked).

        Raises
        ------
        NotFoundError
            No key has this id or name, or a name matches several keys.
        """
        with self._lock:
            keys = self._read()
            matches = [k for k in keys if key in (k.id, k.name)]
            if len(matches) != 1:
                known = ", ".join(f"{k.id} ({k.name})" for k in keys) or "(none)"
                what = "several keys" if matches else "no key"
                raise NotFoundError(
                    f"{what.capitalize()} with id or name {key!r}; keys: {known}. Revoke by id.",
                    key=key,
                )
            target = matches[0]
            if target.active:
                revoked = replace(
                    target, revoked_at=datetime.now(UTC).isoformat(timespec="seconds")
                )
                self._write(tuple(revoked if k is target else k for k in keys))
                target = revoked
            self._stamp = None
        return target

    def verify(self, token: str | None) -> ApiKey | None:
        """The active key whose token this is, else None (constant time per key)."""
        if not token:
            return None
        digest = _digest(token)
        found = None
        for key in self.list_keys():
            if hmac.compare_digest(digest, key.sha256) and key.active:
                found = key
        return found


__all__ = ["PREFIX", "SCOPES", "ApiKey", "KeyStore", "Scope"]
