"""What a served model does with a score: the decision policy and the reason wording.

A :class:`ServingPolicy` is built from the ``serving.models.<name>`` block of
``lendml.yaml`` (:class:`lendml.core.config.ModelServingSettings`) and checked against the
model's features when a version is deployed, so a misconfigured policy fails the
deployment, never a request:

* **decision** — approve when P(bad) < ``approve_below``, decline when P(bad) >=
  ``decline_from``, refer in between; optionally, an **approval holdout** (``explore``)
  approves a small pseudo-random share of the would-be declines and refers below a
  ceiling, so that their outcomes measure what the cutoffs turn away;
* **reasons** — a reason map file gives each feature (or group of features) a code and a
  text; protected attributes are never reasons; features of one group make one reason;
* **inputs** — per feature, a missing value is allowed (the model's own handling),
  rejected, or filled with a number; ``ranges`` bound numeric inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lendml.core.config import ExploreSettings, ModelServingSettings
from lendml.errors import ConfigError
from lendml.models import FeatureSchema, ReasonCode

Decision = Literal["approve", "refer", "decline"]
_SHOW = 5


def explore_bucket(model: str, key: Mapping[str, Any]) -> float:
    """The holdout draw of an applicant: a stable number in ``[0, 100)``.

    A hash (SHA-256) of the model name and the entity keys, so a borrower who applies again
    gets the same draw, and anyone holding the log can recompute it. The text hashed
    differs from the canary's (:func:`lendml.serving.lifecycle.canary_bucket`), so the
    holdout and the canary are drawn independently.

    Examples
    --------
    >>> a = explore_bucket("credit_pd", {"borrower_id": 7})
    >>> a == explore_bucket("credit_pd", {"borrower_id": 7}), 0 <= a < 100
    (True, True)
    """
    keys = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    text = f"explore|{model}|{keys}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


@dataclass(frozen=True)
class ExplorePolicy:
    """The approval holdout: which would-be declines (and refers) are approved instead.

    An applicant is explored when the cutoffs give one of ``decisions``, P(bad) is below
    ``max_probability`` (a hard ceiling), and its draw (:func:`explore_bucket` of the
    entity keys ``keys``, all of them when empty) is below ``percent``. Without the keys
    there is no draw, and no exploration: the holdout never approves by default.

    Examples
    --------
    >>> explore = ExplorePolicy(percent=10.0, max_probability=0.5)
    >>> explore.explores("credit_pd", {"borrower_id": 7}, 0.9, "decline")  # above the ceiling
    False
    >>> drawn = [k for k in range(200) if explore.explores("m", {"id": k}, 0.4, "decline")]
    >>> 5 <= len(drawn) <= 40
    True
    """

    percent: float = 0.0
    max_probability: float = 0.0
    keys: tuple[str, ...] = ()
    decisions: frozenset[str] = frozenset({"decline", "refer"})

    @classmethod
    def from_settings(cls, settings: ExploreSettings) -> ExplorePolicy:
        return cls(
            percent=settings.percent,
            max_probability=settings.max_probability,
            keys=tuple(settings.keys),
            decisions=frozenset(settings.decisions),
        )

    def draw_key(self, entity: Mapping[str, Any]) -> dict[str, Any] | None:
        """The keys the draw hashes, or None when one is missing (no draw)."""
        names = self.keys or tuple(entity)
        if not names or any(entity.get(n) is None for n in names):
            return None
        return {n: entity[n] for n in names}

    def explores(
        self, model: str, entity: Mapping[str, Any], probability: float, decision: Decision
    ) -> bool:
        """Whether the applicant the cutoffs gave ``decision`` is approved by the holdout."""
        if (
            self.percent <= 0
            or decision not in self.decisions
            or not probability < self.max_probability
        ):
            return False
        key = self.draw_key(entity)
        return key is not None and explore_bucket(model, key) < self.percent


@dataclass(frozen=True)
class DecisionPolicy:
    """Cutoffs on the probability of a bad outcome, and the optional approval holdout.

    Examples
    --------
    >>> policy = DecisionPolicy(approve_below=0.1, decline_from=0.3)
    >>> [policy.decide(p) for p in (0.05, 0.2, 0.3)]
    ['approve', 'refer', 'decline']
    """

    approve_below: float = 0.5
    decline_from: float = 0.5
    explore: ExplorePolicy | None = None

    def decide(self, probability: float) -> Decision:
        """The decision of the cutoffs for one probability of a bad outcome."""
        if probability >= self.decline_from:
            return "decline"
        if probability < self.approve_below:
            return "approve"
        return "refer"

    def explores(
        self, model: str, entity: Mapping[str, Any], probability: float, decision: Decision
    ) -> bool:
        """Whether the holdout approves an applicant the cutoffs gave ``decision``."""
        return self.explore is not None and self.explore.explores(
            model, entity, probability, decision
        )


@dataclass(frozen=True)
class ReasonText:
    """The wording of one reason as an adverse-action notice states it."""

    code: str
    text: str


@dataclass(frozen=True)
class ReasonMap:
    """Feature (or group) → reason code and text, and the groups of related features.

    The file (YAML or JSON) reads::

        reasons:
          dti: {code: "R01", text: "Debt obligations too high relative to income"}
          utilisation: {code: "R02", text: "Balances too high relative to credit limits"}
        groups:
          card_utilisation: utilisation
          loc_utilisation: utilisation

    Without a map, a reason's code and text are the feature's (or group's) name.
    """

    reasons: dict[str, ReasonText] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "reason map") -> ReasonMap:
        """Build a map from its parsed file; a malformed entry is a ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must hold a mapping with 'reasons' and 'groups'.")
        unknown = sorted(set(data) - {"reasons", "groups"})
        if unknown:
            raise ConfigError(
                f"{where} has unknown section(s) {unknown!r}; expected 'reasons' and 'groups'."
            )
        reasons: dict[str, ReasonText] = {}
        for name, entry in dict(data.get("reasons") or {}).items():
            if (
                not isinstance(entry, Mapping)
                or set(entry) != {"code", "text"}
                or not all(isinstance(entry[k], str) and entry[k].strip() for k in entry)
            ):
                raise ConfigError(
                    f"{where}: reason {name!r} must be {{code: TEXT, text: TEXT}} with both "
                    f"non-empty; got {entry!r}."
                )
            reasons[str(name)] = ReasonText(code=entry["code"].strip(), text=entry["text"].strip())
        groups = dict(data.get("groups") or {})
        bad = {k: v for k, v in groups.items() if not isinstance(v, str) or not v}
        if bad:
            raise ConfigError(f"{where}: groups must map a feature to a group name; got {bad!r}.")
        return cls(reasons=reasons, groups={str(k): str(v) for k, v in groups.items()})

    @classmethod
    def load(cls, path: str | Path) -> ReasonMap:
        """Read a reason map file (``.yaml``, ``.yml`` or ``.json``)."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(
                f"Reason map {str(p)!r} cannot be read ({exc.strerror}); fix "
                "serving.models.<name>.reasons.map in lendml.yaml.",
                path=str(p),
            ) from exc
        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"Reason map {str(p)!r} is not valid: {exc}", path=str(p)) from exc
        return cls.from_dict(data or {}, where=f"Reason map {str(p)!r}")

    def describe(self, code: str) -> ReasonText:
        """The wording of the reason named ``code`` (a feature or a group)."""
        return self.reasons.get(code) or ReasonText(code=code, text=code)


@dataclass(frozen=True)
class ServingPolicy:
    """Everything configurable about how one model's scores become responses."""

    decision: DecisionPolicy = field(default_factory=DecisionPolicy)
    reason_map: ReasonMap = field(default_factory=ReasonMap)
    top: int = 4
    protected: frozenset[str] = frozenset()
    missing_default: Literal["allow", "reject"] | float = "allow"
    missing: dict[str, Literal["allow", "reject"] | float] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    unknown_entity: Literal["reject", "score"] = "reject"
    reference_point: dict[str, Any] | None = None

    @classmethod
    def from_settings(
        cls, settings: ModelServingSettings, *, root: str | Path = "."
    ) -> ServingPolicy:
        """Build a policy from ``serving.models.<name>``; files resolve against ``root``.

        Raises
        ------
        ConfigError
            The reason map or the reference point file cannot be read or is malformed.
        """
        base = Path(root)
        reasons = settings.reasons
        reason_map = ReasonMap.load(base / reasons.map) if reasons.map else ReasonMap()
        reference = None
        if reasons.reference_point:
            path = base / reasons.reference_point
            try:
                reference = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(
                    f"Reference point file {str(path)!r} cannot be read as JSON ({exc}); "
                    "write it with ReferencePoint.to_dict().",
                    path=str(path),
                ) from exc
        for name, (low, high) in settings.ranges.items():
            if not low <= high:
                raise ConfigError(f"ranges.{name}: the low bound {low} exceeds the high {high}.")
        return cls(
            decision=DecisionPolicy(
                approve_below=settings.decision.approve_below,
                decline_from=settings.decision.decline_from,
                explore=(
                    ExplorePolicy.from_settings(settings.decision.explore)
                    if settings.decision.explore is not None
                    else None
                ),
            ),
            reason_map=reason_map,
            top=reasons.top,
            protected=frozenset(reasons.protected),
            missing_default=settings.missing.default,
            missing=dict(settings.missing.features),
            ranges=dict(settings.ranges),
            unknown_entity=settings.unknown_entity,
            reference_point=reference,
        )

    def check(self, schema: FeatureSchema, *, protected: Sequence[str] = ()) -> None:
        """Refuse a policy that names features the model lacks or leaves a reason unworded.

        ``protected`` adds the attributes the model itself declares protected.

        Raises
        ------
        ConfigError
            A missing-value rule, range or group names an unknown feature; a range is
            set on a categorical feature; or the reason map (when one is given) lacks
            the wording of a reason the model can give.
        """
        names = set(schema.names)
        for what, keys in (
            ("missing.features", self.missing),
            ("ranges", self.ranges),
            ("reason map groups", self.reason_map.groups),
        ):
            unknown = sorted(set(keys) - names)
            if unknown:
                raise ConfigError(
                    f"{what} names feature(s) {unknown[:_SHOW]!r} the model does not have; "
                    f"its features: {sorted(names)[:10]!r}."
                )
        categorical = sorted(set(self.ranges) & set(schema.categorical))
        if categorical:
            raise ConfigError(f"ranges apply to numeric features; {categorical!r} are categorical.")
        if self.reason_map.reasons:
            excluded = self.protected | set(protected)
            codes = {self.reason_map.groups.get(n, n) for n in names if n not in excluded}
            unworded = sorted(codes - set(self.reason_map.reasons) - excluded)
            if unworded:
                raise ConfigError(
                    f"The reason map has no code and text for {unworded[:_SHOW]!r}; every "
                    "feature or group that can be a reason needs one (protected attributes "
                    "excepted)."
                )

    def fill_rule(self, feature: str) -> Literal["allow", "reject"] | float:
        """The missing-value rule of ``feature``."""
        return self.missing.get(feature, self.missing_default)

    def wording(self, reason: ReasonCode) -> dict[str, Any]:
        """A reason as the response states it: code, text, features, contribution."""
        text = self.reason_map.describe(reason.code)
        return {
            "code": text.code,
            "text": text.text,
            "features": list(reason.features),
            "contribution": float(reason.contribution),
        }


__all__ = [
    "DecisionPolicy",
    "ExplorePolicy",
    "ReasonMap",
    "ReasonText",
    "ServingPolicy",
    "explore_bucket",
]
