"""A deployed model: one immutable, warmed-up version that turns requests into decisions.

A :class:`Deployment` holds a verified model version, its tree explainer, the reference
applicant its reasons are measured against, its serving policy and the feature service
it reads online. It never changes after it is built: the service swaps whole
deployments, so a request scored by one never sees parts of another.

Scoring one request (or a batch) runs: check the entity keys and request fields → read
the feature service's online features and compute its derived features → apply the
missing-value rules and ranges → score → decide (the cutoffs, then the approval holdout)
→ reasons (for declines, or on request; an explored approval's would-be decline reasons
are kept for the log).
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

from lendml.core.timeutil import utc_now
from lendml.errors import ConfigError, DataValidationError, NotFoundError
from lendml.features import expr as fexpr
from lendml.features.definitions import ADDITIVE, FeatureService
from lendml.features.online import online_key
from lendml.models import Model, ReasonCode, ReferencePoint, TreeExplainer, reason_codes
from lendml.models.schema import category_label
from lendml.registry import FEATURE_SERVICE_TAG, FEATURE_SERVICE_VERSION_TAG, LoadedModel
from lendml.registry.registry import ModelVersionInfo
from lendml.serving.inputs import FieldKind, ScoreInput, check_entity, check_fields, problem
from lendml.serving.policy import Decision, ServingPolicy
from lendml.serving.records import PredictionRecord, Role
from lendml.stores.base import OnlineStore

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

    ``reasons`` are worded (code, text, features, contribution); ``reason_codes`` keep the
    full :class:`~lendml.models.ReasonCode` for the log; ``missing`` names the model inputs
    that were missing before the missing-value rules. ``policy_decision`` is what the
    cutoffs decided; ``explore`` says the approval holdout approved an applicant they
    would have declined or referred. Such an approval's reasons are those of the
    would-be decline: logged for the adverse-action audit, returned only on request
    (:meth:`returned_reasons`), so no approved applicant is answered as a decline.
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
    policy_decision: Decision | None = None  # None: the same as ``decision``
    explore: bool = False
    explained: bool = False  # the caller asked for reasons

    def returned_reasons(self) -> list[dict[str, Any]]:
        """The reasons the response states (an explored approval's only on request)."""
        return [] if self.explore and not self.explained else self.reasons

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
            policy_decision=self.policy_decision or self.decision,
            explore=self.explore,
        )


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
            # Reasons say how an applicant is riskier than the reference; a declined
            # applicant who scores below a declined reference has no adverse reason.
            # The mean applicant near the cutoff can score above it (the model is not
            # linear), so this is a warning, and such declines are counted.
            log.warning(
                "The reference point of model %s scores P(bad) = %.4f, a decline under "
                "serving.models.%s.decision: declines scoring below it get no reasons. "
                "Choose a reference approved by the policy, or revise the cutoffs.",
                self.info.ref,
                p_reference,
                self.name,
            )
        if service is not None and store is None:
            raise ConfigError(
                f"Model {self.info.ref} reads feature service {service.name!r}: "
                "give the deployment an online store."
            )
        served = set(service.feature_names) if service is not None else set()
        self.entity_keys: tuple[str, ...] = tuple(
            dict.fromkeys(k for e in (service.entities if service else ()) for k in e.keys)
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
        explore = policy.decision.explore
        if explore is not None and service is not None:
            unknown = sorted(set(explore.keys) - set(self.entity_keys))
            if unknown:
                raise ConfigError(
                    f"serving.models.{self.name}.decision.explore.keys names {unknown!r}, "
                    f"not an entity key of feature service {service.name!r}; its keys: "
                    f"{list(self.entity_keys)!r}.",
                    model=self.name,
                    version=self.version,
                )
        self._views = [
            (
                view,
                {
                    **{a.name: (0 if a.function in ADDITIVE else None) for a in view.aggregations},
                    **{f.name: None for f in view.features},
                },
            )
            for view in (service.feature_views if service is not None else ())
        ]
        self._encoders = [
            (
                spec.name,
                None
                if spec.kind == "numeric"
                else {label: float(i) for i, label in enumerate(spec.categories)},
            )
            for spec in self.schema.features
        ]
        self._excluded = sorted(self.protected)
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
        rows = self._features(checked, where)
        return self._score_rows(checked, rows, where, explain=explain, role=role)

    def score_features(
        self,
        entities: Sequence[Mapping[str, Any]],
        rows: Sequence[Mapping[str, Any]],
        *,
        explain: bool = False,
        role: Role = "champion",
    ) -> list[ScoreResult]:
        """Score applicants whose model inputs are already known, one row per entity.

        For replaying history (``lendml simulate``): ``rows`` hold every model input as
        the point-in-time training set computes it at each applicant's time — what the
        online read gave then. Missing-value rules, ranges, decisions and reasons are
        those of :meth:`score`.

        Raises
        ------
        DataValidationError
            A row lacks a model input, or breaks a missing-value rule or a range.
        """
        if len(entities) != len(rows):
            raise ConfigError(f"{len(entities)} entities but {len(rows)} feature rows.")
        where = [f"rows[{i}]." for i in range(len(rows))]
        plain: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            absent = [n for n in self.names if n not in row]
            if absent:
                raise problem(where[i], f"lacks the model input(s) {sorted(absent)[:10]}.")
            plain.append({n: _plain(row[n]) for n in self.names})
        items = [ScoreInput(entity=dict(e), fields={}) for e in entities]
        return self._score_rows(items, plain, where, explain=explain, role=role)

    def _score_rows(
        self,
        checked: list[ScoreInput],
        rows: list[dict[str, Any]],
        where: list[str],
        *,
        explain: bool,
        role: Role,
    ) -> list[ScoreResult]:
        missing = self._apply_missing(rows, where)
        X = self._encode(rows)
        raw = self._raw(X)
        probability = 1.0 / (1.0 + np.exp(-raw))
        cutoffs = self.policy.decision
        policy_decisions = [cutoffs.decide(float(p)) for p in probability]
        explored = [
            cutoffs.explores(self.name, item.entity, float(probability[i]), policy_decisions[i])
            for i, item in enumerate(checked)
        ]
        # an explored approval keeps the reasons of its would-be decline, for the audit
        explain_rows = [i for i, d in enumerate(policy_decisions) if explain or d == "decline"]
        codes: dict[int, list[ReasonCode]] = {}
        if explain_rows:
            phi = self.explainer.contributions(X[explain_rows], self.reference)
            values = np.empty((len(explain_rows), len(self.names)), dtype=object)
            for k, i in enumerate(explain_rows):
                values[k, :] = [rows[i][n] for n in self.names]
            ranked = reason_codes(
                phi,
                self.names,
                top=self.policy.top,
                exclude=self._excluded,
                groups=self.policy.reason_map.groups,
                values=values,
                reference=self.reference,
            )
            codes = dict(zip(explain_rows, ranked, strict=True))
        out = []
        for i, item in enumerate(checked):
            row_codes = codes.get(i, [])
            out.append(
                ScoreResult(
                    model=self.name,
                    version=self.version,
                    role=role,
                    entity=item.entity,
                    features={n: rows[i][n] for n in self.names},
                    score=float(raw[i]),
                    probability=float(probability[i]),
                    decision="approve" if explored[i] else policy_decisions[i],
                    reasons=[self.policy.wording(c) for c in row_codes],
                    reason_codes=row_codes,
                    missing=missing[i],
                    policy_decision=policy_decisions[i],
                    explore=explored[i],
                    explained=explain,
                )
            )
        return out

    def _features(self, items: list[ScoreInput], where: list[str]) -> list[dict[str, Any]]:
        """The model's inputs per item: online features, derived features, request fields.

        The same reads and derivations as :func:`lendml.features.online.online_features`
        (a test holds them equal), on plain dicts: no DataFrame on the request path.
        """
        n = len(items)
        if self.service is None:
            return [{name: it.fields.get(name) for name in self.names} for it in items]
        if self.store is None:  # __init__ refuses this; kept for type checkers
            raise ConfigError(f"Model {self.ref} has no online store to read.")
        rows: list[dict[str, Any]] = [dict(it.entity) for it in items]
        found = [False] * n
        for view, defaults in self._views:
            keys = [online_key(view.entity, r) for r in rows]  # a tuple for several columns
            records = self.store.read_many(view.name, keys)
            for i, record in enumerate(records):
                if record is None:
                    rows[i].update(defaults)
                else:
                    found[i] = True
                    values = record.values
                    for name, default in defaults.items():
                        rows[i][name] = values.get(name, default)
        if self.policy.unknown_entity == "reject" and self._views:
            for i in range(n):
                if not found[i]:
                    keys = ", ".join(self.entity_keys)
                    raise NotFoundError(
                        f"{where[i]}entity: the online store has no features for this entity "
                        f"({keys}); materialize its features first, or set serving.models."
                        f"{self.name}.unknown_entity: score to score it with the "
                        "missing-value rules.",
                        field=f"{where[i]}entity",
                    )
        if self.service.derived_views:
            when = utc_now()
            for i, row in enumerate(rows):
                ctx = {**row, **items[i].fields, "as_of": when}
                for dview in self.service.derived_views:
                    for d in dview.features:
                        try:
                            value = fexpr.evaluate(d.expr, ctx)
                        except (TypeError, ValueError, ArithmeticError) as exc:
                            raise problem(
                                f"{where[i]}fields",
                                f"the request fields cannot be combined into the derived "
                                f"feature {d.name!r} ({type(exc).__name__}); check their types.",
                            ) from exc
                        ctx[d.name] = row[d.name] = value
        return [
            {name: row[name] if name in row else items[i].fields.get(name) for name in self.names}
            for i, row in enumerate(rows)
        ]

    def _encode(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """The float matrix the model reads, as :meth:`FeatureSchema.encode` makes it."""
        X = np.empty((len(rows), len(self.names)), dtype=np.float64)
        for j, (name, lookup) in enumerate(self._encoders):
            for i, row in enumerate(rows):
                v = row[name]
                if v is None:
                    X[i, j] = np.nan
                elif lookup is None:
                    X[i, j] = float(v)
                else:
                    X[i, j] = lookup.get(category_label(v), np.nan)
        return X

    def _apply_missing(self, rows: list[dict[str, Any]], where: list[str]) -> list[tuple[str, ...]]:
        """Apply the missing-value rules and ranges in place; return what was missing."""
        missing_rows: list[list[str]] = [[] for _ in rows]
        for spec in self.schema.features:
            name = spec.name
            rule = self.policy.fill_rule(name)
            bounds = self.policy.ranges.get(name)
            numeric = spec.kind == "numeric"
            for i, row in enumerate(rows):
                v = _plain(row[name])
                if numeric and v is not None:
                    if not isinstance(v, int | float):  # bool is an int: 1.0 / 0.0
                        raise problem(
                            f"{where[i]}features.{name}", "must be a number for this model."
                        )
                    if not math.isfinite(v):
                        v = None
                if v is None:
                    missing_rows[i].append(name)
                    if rule == "reject":
                        raise problem(
                            f"{where[i]}features.{name}",
                            "is missing, and this model's policy does not accept a missing "
                            "value for it.",
                        )
                    if rule != "allow":
                        v = rule
                if bounds is not None and v is not None and not bounds[0] <= v <= bounds[1]:
                    raise problem(
                        f"{where[i]}features.{name}",
                        f"is outside its accepted range [{bounds[0]:g}, {bounds[1]:g}].",
                    )
                row[name] = v
        return [tuple(m) for m in missing_rows]


__all__ = ["Deployment", "ScoreInput", "ScoreResult", "ServiceLookup"]
