"""A deployed model: one immutable, warmed-up version that turns requests into decisions.

A :class:`Deployment` holds a verified model version, its tree explainer, the reference
applicant its reasons are measured against, its serving policy and the feature service
it reads online. It never changes after it is built: the service swaps whole
deployments, so a request scored by one never sees parts of another.

Scoring one request (or a batch) runs: check the entity keys and request fields → read
the feature service's online features and compute its derived features → apply the
missing-value rules and ranges → score → decide → reasons (for declines, or on request).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from lendml.errors import ConfigError, DataValidationError, NotFoundError
from lendml.features.definitions import FeatureService
from lendml.features.online import online_features
from lendml.models import Model, ReasonCode, ReferencePoint, TreeExplainer, reason_codes
from lendml.registry import FEATURE_SERVICE_TAG, FEATURE_SERVICE_VERSION_TAG, LoadedModel
from lendml.registry.registry import ModelVersionInfo
from lendml.serving.inputs import FieldKind, ScoreInput, check_entity, check_fields, problem
from lendml.serving.policy import Decision, ServingPolicy
from lendml.serving.records import PredictionRecord, Role
from lendml.stores.base import OnlineRecord, OnlineStore

log = logging.getLogger(__name__)

ServiceLookup = Callable[[str], FeatureService]
_KIND_OF_REQUEST_FIELD: dict[str, FieldKind] = {
    "number": "number",
    "string": "string",
    "bool": "bool",
    "timestamp": "timestamp",
}


@dataclass(frozen=True)
class ScoreResult:
    """One scored applicant as the service answers and logs it.

    ``reasons`` are worded for the response (code, text, features, contribution);
    ``reason_codes`` keep the full :class:`~lendml.models.ReasonCode` for the log;
    ``missing`` names the model inputs that were missing before the missing-value rules.
    """

    model: str
    version: int
    role: Role
    entity: dict[str, Any]
    features: dict[str, Any]
    score: float
    probability: float
    decision: Decision
    reasons: list[dict[str, Any]] = field(default_factory=list)
    reason_codes: list[ReasonCode] = field(default_factory=list)
    missing: tuple[str, ...] = ()

    def to_record(self, request_id: str, time: datetime) -> PredictionRecord:
        """The prediction-log record of this result."""
        reasons = [
            {**code.to_dict(), "text": worded["text"], "reason_code": worded["code"]}
            for code, worded in zip(self.reason_codes, self.reasons, strict=True)
        ]
        return PredictionRecord(
            request_id=request_id,
            time=time,
            model=self.model,
            version=self.version,
            entity=dict(self.entity),
            features=dict(self.features),
            score=self.score,
            probability=self.probability,
            decision=self.decision,
            reasons=reasons,
            role=self.role,
        )


class _ReadRecorder(OnlineStore):
    """A read-only view of a store that remembers which keys each view found."""

    def __init__(self, store: OnlineStore) -> None:
        self._store = store
        self.found: dict[str, list[bool]] = {}

    def read_many(self, view: str, keys: Sequence[Any]) -> list[OnlineRecord | None]:
        records = self._store.read_many(view, keys)
        self.found[view] = [r is not None for r in records]
        return records

    def write_batch(self, view: str, records: Sequence[OnlineRecord]) -> int:
        raise ConfigError("Serving reads the online store; it never writes to it.")

    def close(self) -> None:
        """The wrapped store belongs to the caller; nothing to release here."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


class Deployment:
    """One model version ready to score; build with :meth:`build`, never mutated.

    Parameters
    ----------
    loaded
        The verified model and its version (:meth:`lendml.registry.Registry.load`).
    policy
        The serving policy of the model's name.
    service
        The feature service the model reads online, or None when every input comes with
        the request (a model trained from a table).
    store
        The online store (required with a ``service``).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        policy: ServingPolicy,
        service: FeatureService | None,
        store: OnlineStore | None,
    ) -> None:
        model: Model = loaded.model
        self.info: ModelVersionInfo = loaded.info
        self.name = loaded.info.name
        self.version = loaded.info.version
        self.model = model
        self.policy = policy
        self.service = service
        self.store = store
        self.schema = model.schema_
        self.names = list(self.schema.names)
        metadata = dict(getattr(model, "metadata_", {}) or {})
        self.protected = frozenset(str(p) for p in metadata.get("protected", ())) | policy.protected
        policy.check(self.schema, protected=sorted(self.protected))
        if model.kind != "lightgbm":
            raise ConfigError(
                f"Model {self.info.ref} is a {model.kind!r} model; the service gives reason "
                "codes with the exact tree explainer, which reads LightGBM models only.",
                model=self.name,
                version=self.version,
            )
        self.explainer = TreeExplainer.from_model(model)  # type: ignore[arg-type]
        self.reference = self._reference(metadata)
        p_reference = 1.0 / (1.0 + math.exp(-float(self._raw(self.reference.encoded[None])[0])))
        if policy.decision.decide(p_reference) == "decline":
            # reasons measure how an applicant is worse than the reference: a reference
            # that is itself declined leaves some declines without any adverse reason
            raise ConfigError(
                f"The reference point of model {self.info.ref} scores P(bad) = "
                f"{p_reference:.4f}, a decline under serving.models.{self.name}.decision "
                f"(decline_from {policy.decision.decline_from}); choose a reference approved "
                "below the cutoff (reference_point(..., side='below')) or fix the cutoffs.",
                model=self.name,
                version=self.version,
            )
        if service is not None and store is None:
            raise ConfigError(
                f"Model {self.info.ref} reads feature service {service.name!r}: "
                "give the deployment an online store."
            )
        served = set(service.feature_names) if service is not None else set()
        self.entity_keys: tuple[str, ...] = (
            tuple(e.key for e in service.entities) if service is not None else ()
        )
        fields: dict[str, FieldKind] = {}
        if service is not None:
            for view in service.derived_views:
                for name, kind in view.request_fields.items():
                    fields[name] = _KIND_OF_REQUEST_FIELD[kind]
        for spec in self.schema.features:
            if spec.name not in served and spec.name not in fields:
                fields[spec.name] = "category" if spec.kind == "categorical" else "number"
        self.request_fields = fields
        self._numeric = [s.name for s in self.schema.features if s.kind == "numeric"]

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        loaded: LoadedModel,
        *,
        policy: ServingPolicy,
        services: ServiceLookup | None,
        store: OnlineStore | None,
        warm_up: bool = True,
    ) -> Deployment:
        """A deployment of ``loaded``, with its feature service looked up and checked.

        The model's lineage names its feature service (``lendml.feature_service``); the
        service's current version must be the one the model was trained on. A model
        without that tag reads every input from the request.

        Raises
        ------
        ConfigError
            The model is not a LightGBM model, has no reference point (neither stored
            with it nor configured), its feature service changed since training, or the
            policy does not fit its features.
        """
        info = loaded.info
        service = None
        service_name = info.lineage.get(FEATURE_SERVICE_TAG)
        if service_name:
            if services is None:
                raise ConfigError(
                    f"Model {info.ref} reads feature service {service_name!r}, but the "
                    "service was started without the project's feature definitions."
                )
            service = services(service_name)
            trained = info.lineage.get(FEATURE_SERVICE_VERSION_TAG)
            if trained and trained != service.version:
                raise ConfigError(
                    f"Model {info.ref} was trained on feature service {service_name!r} "
                    f"version {trained}, but the applied definitions are version "
                    f"{service.version}; serving it would feed it different features. Retrain "
                    "the model, or restore the definitions it was trained on.",
                    model=info.name,
                    version=info.version,
                )
        deployment = cls(loaded, policy=policy, service=service, store=store)
        if warm_up:
            deployment.warm_up()
        return deployment

    def _reference(self, metadata: Mapping[str, Any]) -> ReferencePoint:
        stored = metadata.get("reference_point") or self.policy.reference_point
        if not stored:
            raise ConfigError(
                f"Model {self.info.ref} has no reference point for its reason codes: it was "
                "saved without metadata['reference_point'] and serving.models."
                f"{self.name}.reasons.reference_point names no file. Retrain it with lendml "
                "training (which stores one), or write one with reference_point(...)"
                ".to_dict() and name the file.",
                model=self.name,
                version=self.version,
            )
        try:
            return ReferencePoint.from_dict(stored, self.schema)
        except (DataValidationError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"The reference point of model {self.info.ref} does not fit its features: {exc}",
                model=self.name,
                version=self.version,
            ) from exc

    def warm_up(self) -> None:
        """Score the reference applicant through every step but the online read, so
        the first real request does not pay for lazy initialisation."""
        frame = pd.DataFrame({n: [self.reference.values.get(n)] for n in self.names})
        for spec in self.schema.features:
            if spec.kind == "numeric":
                frame[spec.name] = frame[spec.name].astype("float64")
        X = self.schema.encode(frame)
        self._raw(X)
        phi = self.explainer.contributions(X, self.reference)
        reason_codes(phi, self.names, top=self.policy.top)

    # ------------------------------------------------------------------ scoring
    @property
    def ref(self) -> str:
        """``NAME/VERSION``."""
        return self.info.ref

    def _raw(self, X: np.ndarray) -> np.ndarray:
        model: Any = self.model
        return np.asarray(
            model.booster_.predict(X, raw_score=True, num_iteration=model.best_iteration_),
            dtype=np.float64,
        )

    def check(self, item: ScoreInput, where: str) -> ScoreInput:
        """``item`` with its keys and fields checked against this model's inputs."""
        entity = check_entity(item.entity, required=self.entity_keys, where=f"{where}entity")
        fields = check_fields(item.fields, expected=self.request_fields, where=f"{where}fields")
        return ScoreInput(entity=entity, fields=fields)

    def score(
        self,
        items: Sequence[ScoreInput],
        *,
        explain: bool = False,
        role: Role = "champion",
        prefixes: Sequence[str] | None = None,
    ) -> list[ScoreResult]:
        """Score applicants: one result per item, in order.

        ``prefixes`` give each item's JSON path for error messages (``""`` for a single
        request, ``"items[3]."`` in a batch).

        Raises
        ------
        DataValidationError
            A key or field is missing, of the wrong type, out of range, or a missing
            input the policy rejects (HTTP 422).
        NotFoundError
            The online store has no features for an entity and the policy rejects
            unknown entities (HTTP 404).
        StoreError
            The online store cannot be read.
        """
        if not items:
            return []
        where = list(prefixes) if prefixes is not None else ["" for _ in items]
        checked = [self.check(item, where[i]) for i, item in enumerate(items)]
        frame = self._features(checked, where)
        missing_masks, frame = self._apply_missing(frame, where)
        X = self.schema.encode(frame)
        raw = self._raw(X)
        probability = 1.0 / (1.0 + np.exp(-raw))
        decisions = [self.policy.decision.decide(float(p)) for p in probability]
        explain_rows = [i for i, d in enumerate(decisions) if explain or d == "decline"]
        codes: dict[int, list[ReasonCode]] = {}
        if explain_rows:
            phi = self.explainer.contributions(X[explain_rows], self.reference)
            ranked = reason_codes(
                phi,
                self.names,
                top=self.policy.top,
                exclude=sorted(self.protected),
                groups=self.policy.reason_map.groups,
                values=frame.iloc[explain_rows].reset_index(drop=True),
                reference=self.reference,
            )
            codes = dict(zip(explain_rows, ranked, strict=True))
        out = []
        records = frame.to_dict(orient="records")
        for i, item in enumerate(checked):
            row_codes = codes.get(i, [])
            out.append(
                ScoreResult(
                    model=self.name,
                    version=self.version,
                    role=role,
                    entity=item.entity,
                    features={n: _plain(records[i][n]) for n in self.names},
                    score=float(raw[i]),
                    probability=float(probability[i]),
                    decision=decisions[i],
                    reasons=[self.policy.wording(c) for c in row_codes],
                    reason_codes=row_codes,
                    missing=missing_masks[i],
                )
            )
        return out

    def _features(self, items: list[ScoreInput], where: list[str]) -> pd.DataFrame:
        """The model's inputs per item: online features, derived features, request fields."""
        n = len(items)
        if self.service is None:
            return pd.DataFrame(
                {name: [it.fields.get(name) for it in items] for name in self.names}
            )
        if self.store is None:  # __init__ refuses this; kept for type checkers
            raise ConfigError(f"Model {self.ref} has no online store to read.")
        recorder = _ReadRecorder(self.store)
        request = [it.fields for it in items]
        try:
            looked_up = online_features(
                recorder, self.service, [it.entity for it in items], request=request
            )
        except (TypeError, ValueError, ArithmeticError) as exc:
            if isinstance(exc, DataValidationError):
                raise
            raise problem(
                f"{where[0]}fields" if n == 1 else "items",
                "the request fields cannot be combined into the derived features "
                f"({type(exc).__name__}); check their types.",
            ) from exc
        if self.policy.unknown_entity == "reject" and recorder.found:
            for i in range(n):
                if not any(found[i] for found in recorder.found.values()):
                    keys = ", ".join(self.entity_keys)
                    raise NotFoundError(
                        f"{where[i]}entity: the online store has no features for this entity "
                        f"({keys}); materialize its features first, or set serving.models."
                        f"{self.name}.unknown_entity: score to score it with the "
                        "missing-value rules.",
                        field=f"{where[i]}entity",
                    )
        columns = {}
        for name in self.names:
            if name in looked_up.columns:
                columns[name] = looked_up[name].tolist()
            else:
                columns[name] = [it.fields.get(name) for it in items]
        return pd.DataFrame(columns)

    def _apply_missing(
        self, frame: pd.DataFrame, where: list[str]
    ) -> tuple[list[tuple[str, ...]], pd.DataFrame]:
        """Apply the missing-value rules and ranges; return what was missing per row."""
        missing_rows: list[list[str]] = [[] for _ in range(len(frame))]
        out = {}
        for spec in self.schema.features:
            values = frame[spec.name].tolist()
            rule = self.policy.fill_rule(spec.name)
            bounds = self.policy.ranges.get(spec.name)
            column = []
            for i, value in enumerate(values):
                v = _plain(value)
                if spec.kind == "numeric" and v is not None:
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        raise problem(
                            f"{where[i]}features.{spec.name}", "must be a number for this model."
                        )
                    if not math.isfinite(v):
                        v = None
                if v is None:
                    missing_rows[i].append(spec.name)
                    if rule == "reject":
                        raise problem(
                            f"{where[i]}features.{spec.name}",
                            "is missing, and this model's policy does not accept a missing "
                            "value for it.",
                        )
                    if rule != "allow":
                        v = rule
                if bounds is not None and v is not None and not bounds[0] <= v <= bounds[1]:
                    raise problem(
                        f"{where[i]}features.{spec.name}",
                        f"is outside its accepted range [{bounds[0]:g}, {bounds[1]:g}].",
                    )
                column.append(v)
            if spec.kind == "numeric":
                out[spec.name] = pd.Series(column, dtype="float64")
            else:
                out[spec.name] = pd.Series(column, dtype=object)
        return [tuple(m) for m in missing_rows], pd.DataFrame(out)


__all__ = ["Deployment", "ScoreInput", "ScoreResult", "ServiceLookup"]
