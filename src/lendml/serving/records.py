"""What the service hands to the prediction log: one record per scored entity.

The HTTP service builds a :class:`PredictionRecord` for every response (approvals and
declines alike, shadow scores too) and passes it to a :class:`PredictionSink`. The sink
must never block the request path for long nor raise into it: the prediction log
(:mod:`lendml.serving.prediction_log`) queues records and writes them off the request path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Role = Literal["champion", "canary", "shadow"]


@dataclass(frozen=True)
class PredictionRecord:
    """One decision (or one shadow score) as served.

    ``entity`` holds the entity keys (``{"customer_id": 42}``), ``features`` the exact
    values the model read (after derivation and validation; ``None`` for missing),
    ``reasons`` the reason codes as returned (``ReasonCode.to_dict()``). ``time`` is UTC.
    ``role`` says whether the response came from the champion, the canary, or a shadow
    model (shadow scores are logged, never returned). ``policy_decision`` is what the
    cutoffs decided (None: the same as ``decision``); ``explore`` marks an applicant the
    approval holdout approved although the cutoffs declined or referred it.
    """

    request_id: str
    time: datetime
    model: str
    version: int
    entity: dict[str, Any]
    features: dict[str, Any]
    score: float
    probability: float
    decision: str
    reasons: list[dict[str, Any]] = field(default_factory=list)
    role: Role = "champion"
    policy_decision: str | None = None
    explore: bool = False


class PredictionSink(ABC):
    """Where the service sends records. Implementations must be thread-safe."""

    @abstractmethod
    def submit(self, record: PredictionRecord) -> None:
        """Accept one record without blocking the caller for long and without raising
        because a downstream store is unavailable (keep it and write it later)."""

    @abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Write or spill everything accepted so far, then stop."""
