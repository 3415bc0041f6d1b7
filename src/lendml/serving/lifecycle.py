"""Which deployment answers a request: hot swaps, canary routing and shadow scoring.

For each served model the :class:`ModelManager` keeps one immutable :class:`Routing`:
the champion deployment, an optional canary (a share of entities, sticky by a hash of the
entity key) and an optional shadow (scored on the same request, logged, never returned).
A request reads the routing once and is scored by deployments of that routing only, so
no response mixes versions.

A watcher thread polls the registry every ``watch_interval`` seconds. When an alias the
service follows points at a new version, that version is downloaded, verified, built and
warmed up first; only then is the new routing put in place (one reference assignment).
If anything fails, the old routing keeps serving and the failure is logged and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from lendml.core.config import CanarySettings, ServingSettings
from lendml.errors import ConfigError, DataValidationError, LendmlError, ModelNotFound
from lendml.registry import Registry, parse_ref
from lendml.serving.inputs import ScoreInput
from lendml.serving.metrics import ServingMetrics
from lendml.serving.policy import ServingPolicy
from lendml.serving.records import PredictionSink, Role
from lendml.serving.scorer import Deployment, ServiceLookup
from lendml.stores.base import OnlineStore

log = logging.getLogger(__name__)

CHAMPION = "champion"
_MAX_SHADOW_PENDING = 1000


def canary_bucket(model: str, entity: Mapping[str, Any]) -> float:
    """A stable number in ``[0, 100)`` for an entity: the same entity always gets the same.

    Examples
    --------
    >>> a = canary_bucket("credit_pd", {"borrower_id": 7})
    >>> a == canary_bucket("credit_pd", {"borrower_id": 7}), 0 <= a < 100
    (True, True)
    """
    text = model + "|" + json.dumps(entity, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


@dataclass(frozen=True)
class Routing:
    """Where live traffic of one model goes at one moment. Never mutated: replaced."""

    name: str
    champion: Deployment
    canary: Deployment | None = None
    canary_ref: str | None = None
    canary_percent: float = 0.0
    shadow: Deployment | None = None
    shadow_ref: str | None = None

    def pick(self, entity: Mapping[str, Any]) -> tuple[Deployment, Role]:
        """The deployment (and its role) that scores ``entity``'s live request."""
        if self.canary is not None and canary_bucket(self.name, entity) < self.canary_percent:
            return self.canary, "canary"
        return self.champion, "champion"

    def deployments(self) -> list[Deployment]:
        """The champion, canary and shadow deployments that are set."""
        return [d for d in (self.champion, self.canary, self.shadow) if d is not None]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description for ``GET /v1/models``."""
        return {
            "name": self.name,
            "champion": self.champion.version,
            "canary": (
                None
                if self.canary is None
                else {
                    "ref": self.canary_ref,
                    "version": self.canary.version,
                    "percent": self.canary_percent,
                }
            ),
            "shadow": (
                None
                if self.shadow is None
                else {"ref": self.shadow_ref, "version": self.shadow.version}
            ),
        }


@dataclass(frozen=True)
class Target:
    """What scores one request: the deployment, its role, and the routing it came from."""

    deployment: Deployment
    role: Role
    routing: Routing
    live: bool  # live traffic of the champion: shadow scoring applies


class ModelManager:
    """The served models: loads them, routes requests, follows the registry.

    Parameters
    ----------
    registry
        Where versions are resolved and loaded from.
    settings
        The ``serving:`` settings; ``settings.model`` and the names under
        ``settings.models`` are served.
    services
        Returns the feature service of a name (the project's definitions); None when
        every served model reads its inputs from the request.
    store
        The online store.
    root
        The project folder (reason map and reference files resolve against it).
    metrics
        Where swaps and versions are counted.
    sink
        Where shadow scores are logged.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        settings: ServingSettings,
        services: ServiceLookup | None = None,
        store: OnlineStore | None = None,
        root: str | Path = ".",
        metrics: ServingMetrics | None = None,
        sink: PredictionSink | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.services = services
        self.store = store
        self.root = Path(root)
        self.metrics = metrics or ServingMetrics()
        self.sink = sink
        names = ([settings.model] if settings.model else []) + list(settings.models)
        self.names: tuple[str, ...] = tuple(dict.fromkeys(names))
        if not self.names:
            raise ConfigError(
                "No model to serve: set serving.model in lendml.yaml (the registered model "
                "whose champion answers requests)."
            )
        self.default = settings.model or self.names[0]
        self._routings: dict[str, Routing] = {}
        self._traffic: dict[str, tuple[str | None, CanarySettings | None]] = {
            n: (settings.for_model(n).shadow, settings.for_model(n).canary) for n in self.names
        }
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lendml-shadow")
        self._shadow_slots = threading.BoundedSemaphore(_MAX_SHADOW_PENDING)

    # ------------------------------------------------------------------ loading
    def start(self, *, watch: bool = True) -> None:
        """Deploy every served model's champion (and its canary and shadow); then start
        the watcher if ``watch`` and ``watch_interval`` > 0.

        Raises
        ------
        LendmlError
            A champion cannot be resolved, loaded or deployed (the service must not
            start without it).
        """
        self.refresh(strict=True)
        if watch and self.settings.watch_interval > 0:
            self._watcher = threading.Thread(
                target=self._watch, name="lendml-registry-watcher", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.watch_interval):
            try:
                self.refresh()
            except Exception:  # the watcher must survive anything and keep the old routing
                log.exception("Registry watcher: refresh failed; the current models keep serving")

    def close(self) -> None:
        """Stop the watcher and the shadow worker (pending shadow scores finish)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
        self._shadow_pool.shutdown(wait=True)

    def _ref(self, name: str, ref: str) -> str:
        """``ref`` (an alias or a version of ``name``) as a registry reference."""
        text = str(ref).strip()
        return f"{name}/{text}" if text.isdigit() else f"{name}@{text}"

    def _deploy(self, ref: str, cache: dict[int, Deployment]) -> Deployment:
        info = self.registry.resolve(ref)
        if info.version in cache:
            return cache[info.version]
        loaded = self.registry.load(info.ref)
        policy = ServingPolicy.from_settings(self.settings.for_model(info.name), root=self.root)
        deployment = Deployment.build(
            loaded, policy=policy, services=self.services, store=self.store
        )
        cache[info.version] = deployment
        log.info("Deployed %s (loaded, verified and warmed up)", info.ref)
        return deployment

    def _build(self, name: str, current: Routing | None) -> Routing:
        cache = {d.version: d for d in current.deployments()} if current else {}
        shadow_ref, canary = self._traffic[name]
        champion = self._deploy(self._ref(name, CHAMPION), cache)
        routing = Routing(name=name, champion=champion)
        if canary is not None and canary.percent > 0:
            routing = replace(
                routing,
                canary=self._deploy(self._ref(name, canary.ref), cache),
                canary_ref=canary.ref,
                canary_percent=canary.percent,
            )
        if shadow_ref:
            routing = replace(
                routing,
                shadow=self._deploy(self._ref(name, shadow_ref), cache),
                shadow_ref=shadow_ref,
            )
        return routing

    def refresh(self, name: str | None = None, *, strict: bool = False) -> dict[str, Any]:
        """Re-read the aliases of the served models and swap in what changed.

        Returns ``{model: routing description}``. With ``strict`` a failure raises;
        otherwise the model keeps its current routing and the failure is logged (a model
        that has none yet still raises: nothing could serve it).
        """
        names = self.names if name is None else (self._served(name),)
        with self._lock:
            for n in names:
                current = self._routings.get(n)
                try:
                    routing = self._build(n, current)
                except LendmlError as exc:
                    self.metrics.swaps.labels(n, "failed").inc()
                    if strict or current is None:
                        raise
                    log.warning(
                        "Model %s: keeping %s; the new routing failed: %s",
                        n,
                        current.champion.ref,
                        exc.message,
                    )
                    continue
                if current is None or routing.to_dict() != current.to_dict():
                    self._routings[n] = routing  # the swap: one reference assignment
                    if current is not None:
                        self.metrics.swaps.labels(n, "swapped").inc()
                        log.info("Model %s: now serving %s", n, routing.to_dict())
                self.metrics.set_versions(
                    n,
                    {
                        "champion": routing.champion.version,
                        "canary": routing.canary.version if routing.canary else None,
                        "shadow": routing.shadow.version if routing.shadow else None,
                    },
                )
        return {n: self._routings[n].to_dict() for n in names}

    def set_traffic(
        self,
        name: str,
        *,
        shadow: str | None,
        canary: CanarySettings | None,
    ) -> dict[str, Any]:
        """Change a model's shadow and canary, load what they name, and swap.

        Raises
        ------
        ModelNotFound
            The model is not served here, or the alias or version does not exist.
        LendmlError
            The named version cannot be deployed; the previous settings stay.
        """
        name = self._served(name)
        with self._lock:
            previous = self._traffic[name]
            self._traffic[name] = (shadow, canary)
        try:
            return self.refresh(name, strict=True)[name]
        except LendmlError:
            with self._lock:
                self._traffic[name] = previous
            raise

    # ------------------------------------------------------------------ routing
    def _served(self, name: str) -> str:
        if name not in self.names:
            raise ModelNotFound(
                f"Model {name!r} is not served here; served: {', '.join(self.names)}. "
                "Add it to serving.models in lendml.yaml.",
                model=name,
            )
        return name

    def routing(self, name: str | None = None) -> Routing:
        """The current routing of ``name`` (default: the default model)."""
        served = self._served(name or self.default)
        routing = self._routings.get(served)
        if routing is None:
            raise ModelNotFound(f"Model {served!r} is not deployed yet.", model=served)
        return routing

    def target(self, ref: str | None, entity: Mapping[str, Any]) -> Target:
        """Which deployment scores a request naming ``ref`` for ``entity``.

        ``None`` or a bare name means the model's champion (live traffic: the canary
        may take it, the shadow scores it too). ``NAME@ALIAS`` and ``NAME/VERSION`` must
        name a version this service has deployed.

        Raises
        ------
        ModelNotFound
            The model is not served here, or the alias or version is not deployed.
        ConfigError
            ``ref`` is not a valid reference.
        """
        if ref is None:
            name, version, alias = self.default, None, CHAMPION
        else:
            try:
                name, version, alias = parse_ref(ref)
            except ConfigError as exc:
                raise DataValidationError(f"model: {exc.message}", field="model") from exc
        try:
            routing = self.routing(name)
        except ModelNotFound as exc:
            raise ModelNotFound(exc.message, model=name, field="model") from exc
        if alias == CHAMPION:
            deployment, role = routing.pick(entity)
            return Target(deployment, role, routing, live=True)
        roles: tuple[tuple[Deployment | None, str | None, Role], ...] = (
            (routing.champion, CHAMPION, "champion"),
            (routing.canary, routing.canary_ref, "canary"),
            (routing.shadow, routing.shadow_ref, "shadow"),
        )
        for deployment, label, role in roles:
            if deployment is None:
                continue
            if (version is not None and deployment.version == version) or (
                alias is not None and alias == label
            ):
                return Target(deployment, role, routing, live=False)
        deployed = ", ".join(f"{label} → {d.version}" for d, label, _ in roles if d is not None)
        raise ModelNotFound(
            f"model: {ref!r} is not deployed on this service; deployed versions of {name!r}: "
            f"{deployed}. Ask for {name}@champion, or have an admin set it as shadow or "
            "canary.",
            model=name,
            field="model",
        )

    def status(self) -> dict[str, Any]:
        """Every served model's routing (for ``GET /v1/models`` and ``/readyz``)."""
        return {
            "default": self.default,
            "models": {n: r.to_dict() for n, r in sorted(self._routings.items())},
        }

    @property
    def ready(self) -> bool:
        """True when every served model has a champion deployed."""
        return all(n in self._routings for n in self.names)

    # ------------------------------------------------------------------ shadow
    def shadow(
        self,
        routing: Routing,
        items: Sequence[ScoreInput],
        request_ids: Sequence[str],
        time: datetime,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        """Score ``items`` with the routing's shadow off the request path and log them.

        Never raises into the request: a full queue drops the shadow score (counted in
        ``lendml_shadow_dropped_total``); a scoring error is logged.
        """
        shadow = routing.shadow
        if shadow is None or self.sink is None:
            return
        if not self._shadow_slots.acquire(blocking=False):
            self.metrics.shadow_dropped.labels(routing.name).inc(len(items))
            return
        sink = self.sink

        def run() -> None:
            try:
                results = shadow.score(items, role="shadow")
                for rid, result in zip(request_ids, results, strict=True):
                    sink.submit(result.to_record(rid, time))
                    if on_result is not None:
                        on_result(result)
            except LendmlError as exc:
                log.warning(
                    "Shadow %s could not score a request: %s", shadow.ref, type(exc).__name__
                )
            except Exception:  # a shadow must never affect serving; keep the worker alive
                log.exception("Shadow %s failed", shadow.ref)
            finally:
                self._shadow_slots.release()

        try:
            self._shadow_pool.submit(run)
        except RuntimeError:  # shut down
            self._shadow_slots.release()


__all__ = ["ModelManager", "Routing", "Target", "canary_bucket"]
