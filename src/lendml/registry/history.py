"""The promotion history of a registered model, kept inside MLflow as registered-model tags.

MLflow keeps only where an alias points now, not who moved it, when or why. lendml writes
one registered-model tag per promotion or rollback::

    lendml.history.000007-3fa2c1 = {"action":"promote","alias":"champion","version":4,
                                    "previous_version":3,"user":"ana","at":"…",
                                    "reason":"Q3 refresh beat champion","state":"done"}

Tags work on every MLflow backend (SQLite, PostgreSQL behind a tracking server, Databricks),
so the history lives next to the aliases it explains and is read with the same credentials.
The key's zero-padded sequence number orders events; the random suffix keeps two writers
that race for the same number from overwriting each other.

Writing order (see :meth:`lendml.registry.Registry.promote`): the event is written first
with ``state="pending"``, then the alias is moved, then the event is rewritten as
``"done"`` (or ``"failed"`` if the move failed). An alias therefore never moves without an
event that says so; a crash between the steps leaves a ``pending`` event, which the replay
below counts as applied only if it is the alias's last event and the alias points at its
version.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from lendml.errors import ConfigError, RegistryError
from lendml.registry.tags import HISTORY_TAG_PREFIX

ALIASES: tuple[str, ...] = ("champion", "challenger", "shadow")
MAX_REASON_LENGTH = 2000

Action = Literal["promote", "rollback"]
State = Literal["pending", "done", "failed"]


@dataclass(frozen=True)
class PromotionEvent:
    """One move of an alias: who moved it, when, why, and from which version.

    Attributes
    ----------
    alias
        ``champion``, ``challenger`` or ``shadow``.
    version
        The version the alias was moved to.
    previous_version
        The version that held the alias before, or ``None``.
    user
        Who acted (``LENDML_USER`` or the login name unless given).
    at
        When, in UTC.
    reason
        Why, as given by the user.
    action
        ``"promote"`` or ``"rollback"``.
    seq
        Position in the model's history (1, 2, …).
    state
        ``"done"``; ``"failed"`` if the alias could not be moved; ``"pending"`` if the
        writer stopped between recording the event and confirming it.
    """

    alias: str
    version: int
    previous_version: int | None
    user: str
    at: datetime
    reason: str
    action: Action
    seq: int
    state: State = "done"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``at`` as ISO-8601 UTC)."""
        return {
            "seq": self.seq,
            "action": self.action,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "user": self.user,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "state": self.state,
        }


def check_alias(alias: str) -> str:
    """``alias`` if it is one lendml manages, else a ConfigError naming the allowed ones."""
    if alias not in ALIASES:
        raise ConfigError(
            f"Alias {alias!r} is not one lendml manages; use one of: {', '.join(ALIASES)}.",
            alias=alias,
        )
    return alias


def check_reason(reason: str | None) -> str:
    """A non-empty reason of at most :data:`MAX_REASON_LENGTH` characters."""
    text = (reason or "").strip()
    if not text:
        raise ConfigError(
            "A promotion or rollback needs a reason (e.g. --reason 'AUC +0.8pt on the "
            "Q3 out-of-time window'); it is kept in the model's history."
        )
    if len(text) > MAX_REASON_LENGTH:
        raise ConfigError(
            f"The reason has {len(text)} characters; keep it to {MAX_REASON_LENGTH} and put "
            "longer evidence in the run's artifacts."
        )
    return text


def new_event(
    *,
    alias: str,
    version: int,
    previous_version: int | None,
    user: str,
    reason: str,
    action: Action,
    seq: int,
) -> PromotionEvent:
    """A pending event stamped now (UTC)."""
    return PromotionEvent(
        alias=alias,
        version=version,
        previous_version=previous_version,
        user=user,
        at=datetime.now(UTC),
        reason=reason,
        action=action,
        seq=seq,
        state="pending",
    )


def tag_key(seq: int) -> str:
    """A fresh tag key for event number ``seq``."""
    return f"{HISTORY_TAG_PREFIX}{seq:06d}-{secrets.token_hex(3)}"


def encode(event: PromotionEvent) -> str:
    """The event as the compact JSON stored in its tag (``seq`` lives in the key)."""
    body = event.to_dict()
    body.pop("seq")
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def decode(key: str, value: str) -> PromotionEvent:
    """Read one history tag back.

    Raises
    ------
    RegistryError
        The tag is not a lendml history event (edited by hand?). The history must be
        trustworthy, so nothing reads past it.
    """
    try:
        seq = int(key[len(HISTORY_TAG_PREFIX) :].split("-", 1)[0])
        body = json.loads(value)
        previous = body["previous_version"]
        if body["action"] not in ("promote", "rollback"):
            raise ValueError(f"unknown action {body['action']!r}")
        if body.get("state", "done") not in ("pending", "done", "failed"):
            raise ValueError(f"unknown state {body['state']!r}")
        return PromotionEvent(
            alias=str(body["alias"]),
            version=int(body["version"]),
            previous_version=None if previous is None else int(previous),
            user=str(body["user"]),
            at=datetime.fromisoformat(body["at"]).astimezone(UTC),
            reason=str(body["reason"]),
            action=body["action"],
            seq=seq,
            state=body.get("state", "done"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(
            f"Registered-model tag {key!r} is not a valid lendml history event "
            f"(value {value[:200]!r}): {exc}. Restore it or delete the tag in MLflow.",
            tag=key,
        ) from exc


def read_events(tags: Mapping[str, str]) -> list[tuple[str, PromotionEvent]]:
    """All history events in ``tags`` with their keys, oldest first."""
    events = [(k, decode(k, v)) for k, v in tags.items() if k.startswith(HISTORY_TAG_PREFIX)]
    events.sort(key=lambda item: (item[1].seq, item[1].at, item[0]))
    return events


def next_seq(events: Iterable[tuple[str, PromotionEvent]]) -> int:
    return max((e.seq for _, e in events), default=0) + 1


def failed(event: PromotionEvent) -> PromotionEvent:
    return replace(event, state="failed")


def done(event: PromotionEvent) -> PromotionEvent:
    return replace(event, state="done")


def holders(events: list[PromotionEvent], alias: str, current: int | None) -> list[int]:
    """The stack of versions that held ``alias``, oldest first, replayed from its events.

    A promotion pushes its version (and the previous holder first, if the alias had been
    moved outside lendml); a rollback pops. Failed events are skipped; a pending event
    counts only if it is the alias's last one and the alias points at its version.
    """
    mine = [e for e in events if e.alias == alias and e.state != "failed"]
    stack: list[int] = []
    for i, e in enumerate(mine):
        if e.state == "pending" and not (i == len(mine) - 1 and current == e.version):
            continue
        if e.action == "promote":
            if e.previous_version is not None and (not stack or stack[-1] != e.previous_version):
                stack.append(e.previous_version)
            stack.append(e.version)
        else:
            if stack:
                stack.pop()
            if not stack or stack[-1] != e.version:
                stack.append(e.version)
    return stack


__all__ = ["ALIASES", "PromotionEvent"]
