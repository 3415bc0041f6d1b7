"""``Project``: a folder with ``lendml.yaml`` and feature definitions, opened from Python.

Every CLI command is a thin call into this class, so a notebook can do exactly what the
CLI does.

Examples
--------
>>> import tempfile
>>> from lendml import Project
>>> p = Project.init(tempfile.mkdtemp() + "/fraud")
>>> (p.root / "lendml.yaml").exists()
True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lendml.core.config import CONFIG_FILE, DEFAULT_YAML, ProjectConfig, load_config
from lendml.engines import OfflineEngine, create_engine
from lendml.errors import ConfigError, DefinitionError, FeatureNotFound, ProjectNotFound
from lendml.features.catalog import Catalog, CatalogEntry
from lendml.features.data_checks import validate_source_data
from lendml.features.definitions import FeatureService, FeatureView
from lendml.features.loader import Definitions, load_definitions
from lendml.features.materialize import MaterializeReport, materialize, read_state
from lendml.features.online import online_features
from lendml.features.training_set import Label, SpineLike, TrainingSet, build_training_set
from lendml.features.validate import validate_definitions
from lendml.stores import OnlineStore, create_online_store

if TYPE_CHECKING:  # training and the registry load MLflow/LightGBM: imported on first use
    from lendml.registry.registry import Registry
    from lendml.registry.tracking import Tracker
    from lendml.training.config import TrainConfig
    from lendml.training.run import Reproduction, ServiceFrame, TrainResult

# The first example of docs/features.md, written into every new project.
EXAMPLE_FEATURES = '''\
"""Feature definitions of this project. Edit, then run `lendml apply`."""

from lendml import Aggregation, Entity, FeatureService, FeatureView, Source

customer = Entity("customer", key="CUSTOMER_ID")
tx = Source.parquet("data/transactions.parquet", timestamp="TX_DATETIME")
spend = FeatureView(
    "spend", entity=customer, source=tx,
    aggregations=[
        Aggregation("TX_AMOUNT", "count", window="1d", name="nb_tx_1d"),
        Aggregation("TX_AMOUNT", "mean", window="7d", name="avg_amount_7d"),
        Aggregation("TX_AMOUNT", "sum", window="30d", where="TX_AMOUNT > 100", name="big_spend_30d"),
    ],
)
fraud_v1 = FeatureService("fraud_v1", [spend])
'''


class Project:
    """A lendml project folder.

    Parameters
    ----------
    root
        The folder holding ``lendml.yaml``.
    engine
        Override the configured engine type (``"duckdb"`` or ``"spark"``).
    """

    def __init__(self, root: str | os.PathLike = ".", *, engine: str | None = None) -> None:
        self.root = Path(root).resolve()
        if not (self.root / CONFIG_FILE).is_file():
            raise ProjectNotFound(
                f"No {CONFIG_FILE} in {str(self.root)!r}: run `lendml init DIR` to create a "
                "project, or pass --project DIR.",
                path=str(self.root),
            )
        overrides = {"engine": {"type": engine}} if engine else None
        self.config: ProjectConfig = load_config(self.root, overrides=overrides)
        self._engine: OfflineEngine | None = None
        self._online: OnlineStore | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def init(cls, root: str | os.PathLike, *, name: str | None = None) -> Project:
        """Create a project folder with ``lendml.yaml`` and an example ``features.py``."""
        path = Path(root)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(
                f"{str(path)!r} exists and is not an empty folder; `lendml init` only writes "
                "into a new or empty folder.",
                path=str(path),
            )
        path.mkdir(parents=True, exist_ok=True)
        project_name = name or path.resolve().name.replace("-", "_") or "lendml_project"
        (path / CONFIG_FILE).write_text(DEFAULT_YAML.format(name=project_name))
        (path / "features.py").write_text(EXAMPLE_FEATURES)
        (path / "data").mkdir(exist_ok=True)
        (path / ".gitignore").write_text(
            "data/online.db\ndata/offline/\ndata/mlflow.db\ndata/mlartifacts/\n"
            "data/model-cache/\nreports/\n"
        )
        return cls(path)

    def close(self) -> None:
        """Release the engine."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._online is not None:
            self._online.close()
            self._online = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, engine={self.config.engine.type!r})"

    # ------------------------------------------------------------------ plumbing

    def resolve_path(self, path: str) -> str:
        """A source or store path: absolute as given, relative to the project folder."""
        return path if os.path.isabs(path) else str(self.root / path)

    @property
    def engine(self) -> OfflineEngine:
        """The offline engine, created on first use."""
        if self._engine is None:
            settings = self.config.engine.model_dump(exclude={"type"})
            self._engine = create_engine(self.config.engine.type, **settings)
        return self._engine

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(Path(self.resolve_path(self.config.catalog)))

    def definitions(self) -> Definitions:
        """Load the definitions file (``features.py`` by default)."""
        return load_definitions(Path(self.resolve_path(self.config.definitions)))

    # ------------------------------------------------------------------ apply / catalog

    def apply(self, *, validate_data: bool = True) -> dict[str, list[str]]:
        """Validate the definitions and record them, with versions, in the catalog.

        Parameters
        ----------
        validate_data
            Also check the column rules the sources declare (``Column``, ``unique_key``)
            on their data, on the engine. A broken rule raises
            :class:`~lendml.errors.DataValidationError` and nothing is recorded.
        """
        defs = self.definitions()
        validate_definitions(
            defs.entities,
            defs.feature_views,
            defs.derived_views,
            defs.feature_services,
            self.resolve_path,
        )
        ruled = [src for src in defs.sources if src.columns or src.unique_key]
        if validate_data and ruled:  # no engine is started for sources without rules
            validate_source_data(self.engine, ruled, self.resolve_path)
        items: list[tuple[str, str, str, dict[str, Any]]] = []
        from lendml.features.definitions import spec_hash

        for e in defs.entities:
            items.append(("entities", e.name, spec_hash(e.to_spec()), e.to_spec()))
        for v in defs.feature_views:
            items.append(("feature_views", v.name, v.version, v.to_spec()))
        for d in defs.derived_views:
            items.append(("derived_views", d.name, d.version, d.to_spec()))
        for s in defs.feature_services:
            spec = {**s.to_spec(), "features": list(s.feature_names)}
            items.append(("feature_services", s.name, s.version, spec))
        return self.catalog.record(items)

    def list_feature_views(self) -> list[CatalogEntry]:
        return self.catalog.list("feature_views") + self.catalog.list("derived_views")

    def list_feature_services(self) -> list[CatalogEntry]:
        return self.catalog.list("feature_services")

    def get_feature_view(self, name: str) -> CatalogEntry:
        try:
            return self.catalog.get("feature_views", name)
        except FeatureNotFound:
            return self.catalog.get("derived_views", name)

    def get_feature_service(self, name: str | FeatureService) -> FeatureService:
        """A feature service from the definitions file, checked against the catalog."""
        if isinstance(name, FeatureService):
            return name
        defs = self.definitions()
        by_name = {s.name: s for s in defs.feature_services}
        if name not in by_name:
            raise FeatureNotFound(
                f"No feature service named {name!r} in {self.config.definitions}. "
                f"Known: {', '.join(sorted(by_name)) or '(none)'}.",
                name=name,
            )
        service = by_name[name]
        applied = self.catalog.get("feature_services", name)
        if applied.version != service.version:
            raise DefinitionError(
                f"Feature service {name!r} changed since the last `lendml apply` (applied "
                f"version {applied.version}, definitions now {service.version}). Run "
                "`lendml apply` to validate and record it first.",
                service=name,
            )
        return service

    def get_feature_views(self, names: Iterable[str] | None = None) -> list[FeatureView]:
        views = self.definitions().feature_views
        if names is None:
            return list(views)
        wanted = set(names)
        return [v for v in views if v.name in wanted]

    # ------------------------------------------------------------------ training sets

    def training_set(
        self,
        service: str | FeatureService,
        spine: SpineLike,
        *,
        as_of: str = "as_of",
        label: Label | Mapping[str, Any] | None = None,
    ) -> TrainingSet:
        """Point-in-time-correct training set for ``spine`` with ``service``'s features.

        Parameters
        ----------
        service
            A feature service name (as applied) or object.
        spine
            pandas, Arrow or a Parquet/CSV path with the entity key columns and an as-of
            timestamp column.
        as_of
            The spine's as-of column (default ``"as_of"``).
        label
            Optional :class:`~lendml.features.training_set.Label` (or its fields as a
            dict) for label maturity.
        """
        svc = self.get_feature_service(service)
        if isinstance(label, Mapping):
            label = Label(**label)
        return build_training_set(
            self.engine, svc, spine, resolve_path=self.resolve_path, as_of=as_of, label=label
        )

    # ------------------------------------------------------------------ materialization

    @property
    def online_store(self) -> OnlineStore:
        """The configured online store, opened on first use."""
        if self._online is None:
            cfg = self.config.online_store
            opts = cfg.model_dump(exclude={"type"})
            if "path" in opts:
                opts["path"] = self.resolve_path(opts["path"])
            self._online = create_online_store(cfg.type, **opts)
        return self._online

    @property
    def offline_root(self) -> Path:
        return Path(self.resolve_path(self.config.offline_store.path))

    def materialize(
        self,
        *,
        start: Any,
        end: Any,
        views: Iterable[str] | None = None,
        every: str = "1d",
        chunk: str = "7d",
        progress: Any = None,
        validate_data: bool = True,
    ) -> MaterializeReport:
        """Compute feature views over ``(start, end]`` into the offline and online stores.

        Only applied views are materialized (run ``lendml apply`` first). Unless
        ``validate_data=False``, the column rules of the views' sources are checked on the
        data first; a broken rule raises :class:`~lendml.errors.DataValidationError` before
        anything is written.
        """
        selected = self.get_feature_views(views)
        applied = {e.name: e.version for e in self.catalog.list("feature_views")}
        for v in selected:
            if applied.get(v.name) != v.version:
                raise DefinitionError(
                    f"Feature view {v.name!r} is not applied in its current form; run "
                    "`lendml apply` first.",
                    feature_view=v.name,
                )
        if views is not None:
            unknown = set(views) - {v.name for v in selected}
            if unknown:
                raise FeatureNotFound(f"No feature view(s) named {sorted(unknown)}.")
        ruled = [v.source for v in selected if v.source.columns or v.source.unique_key]
        if validate_data and ruled:
            validate_source_data(self.engine, ruled, self.resolve_path)
        return materialize(
            self.engine,
            selected,
            start=start,
            end=end,
            resolve_path=self.resolve_path,
            offline_root=self.offline_root,
            online=self.online_store,
            state_path=self.offline_root / "_materialized.json",
            every=every,
            chunk=chunk,
            progress=progress,
        )

    def materialization_state(self) -> dict[str, Any]:
        """The materialized ranges per feature view."""
        return read_state(self.offline_root / "_materialized.json")

    def online_features(
        self,
        service: str | FeatureService,
        keys: Any,
        *,
        as_of: Any = None,
        request: Any = None,
    ) -> Any:
        """Latest feature values for entity keys from the online store (a DataFrame).

        ``keys`` is ``{"CUSTOMER_ID": [1, 2]}`` or a list of dicts. Values are those of the
        last materialization (its ``--end`` time); derived features use ``as_of``
        (default now) and ``request`` fields.
        """
        svc = self.get_feature_service(service)
        return online_features(self.online_store, svc, keys, as_of=as_of, request=request)

    # ------------------------------------------------------------------ training & registry

    @cached_property
    def tracker(self) -> Tracker:
        """Tracked runs (MLflow, per ``tracking:`` in lendml.yaml)."""
        from lendml.registry.tracking import Tracker

        return Tracker(self.config.tracking, root=self.root, default_experiment=self.config.name)

    @cached_property
    def registry(self) -> Registry:
        """The model registry (MLflow, per ``tracking:`` in lendml.yaml)."""
        from lendml.registry.registry import Registry

        return Registry(self.config.tracking, root=self.root)

    def train_config(
        self, config: str | os.PathLike | Mapping[str, Any] | TrainConfig
    ) -> TrainConfig:
        """A validated ``train.yaml`` (a path relative to the project, a mapping, or as is)."""
        from lendml.training.config import TrainConfig, load_train_config, parse_train_config

        if isinstance(config, TrainConfig):
            return config
        if isinstance(config, Mapping):
            return parse_train_config(dict(config))
        path = Path(config)
        return load_train_config(path if path.is_absolute() else self.root / path)

    def service_frame(self, config: TrainConfig) -> ServiceFrame:
        """The point-in-time training set a ``train.yaml`` asks for, as a frame."""
        from lendml.training.run import ServiceFrame

        svc = self.get_feature_service(config.feature_service)
        label = None
        if config.label.observed_at:
            import pandas as pd

            from lendml.features.training_set import read_spine

            spine = read_spine(self.resolve_path(config.spine), as_of=config.as_of)
            cutoff = config.label.cutoff or pd.Timestamp(spine[config.as_of].to_pandas().max())
            label = Label(
                config.label.column, config.label.observed_at, cutoff=cutoff, drop_immature=False
            )
        ts = self.training_set(
            svc, self.resolve_path(config.spine), as_of=config.as_of, label=label
        )
        frame = ts.to_pandas()
        keys = dict.fromkeys(k for e in svc.entities for k in e.keys)
        sort_cols = [config.as_of, *keys]
        frame = frame.sort_values(sort_cols, kind="stable").reset_index(drop=True)
        sources = self.source_fingerprints(svc)
        digest = hashlib.sha256(f"{ts.spine_fingerprint}|{svc.version}".encode())
        for path, sha in sorted(sources.items()):
            digest.update(f"|{path}={sha}".encode())
        return ServiceFrame(
            frame=frame,
            feature_names=tuple(svc.feature_names),
            service=svc.name,
            service_version=svc.version,
            fingerprint=digest.hexdigest(),
            immature_labels=ts.immature_labels,
            spine_fingerprint=ts.spine_fingerprint,
            sources=sources,
        )

    def source_fingerprints(self, service: str | FeatureService) -> dict[str, str]:
        """sha256 of the content of each source a feature service reads (its snapshot)."""
        from lendml.training.data import file_fingerprint

        svc = self.get_feature_service(service)
        out = {}
        for view in svc.feature_views:
            path = view.source.path
            if path not in out:
                resolved = Path(self.resolve_path(path))
                out[path] = file_fingerprint(resolved) if resolved.exists() else "missing"
        return out

    def train(
        self,
        config: str | os.PathLike | Mapping[str, Any] | TrainConfig = "train.yaml",
        *,
        report_dir: str | os.PathLike | None = None,
        warm_start: Mapping[str, Any] | None = None,
    ) -> TrainResult:
        """Train, evaluate and track a model as ``config`` (a ``train.yaml``) says.

        Returns the :class:`~lendml.training.run.TrainResult`; the run (parameters,
        metrics, lineage, model artifact, report) is in the project's MLflow tracking.
        """
        from lendml.training.run import train_service_frame

        cfg = self.train_config(config)
        data = self.service_frame(cfg)
        return train_service_frame(
            data,
            cfg,
            tracker=self.tracker,
            project=self.config.name,
            report_dir=report_dir or self.root / "reports" / cfg.name,
            recipe_extra={"project": str(self.root)},
            warm_start=warm_start,
        )

    def reproduce(self, run_id: str) -> Reproduction:
        """Rebuild the model of run ``run_id`` and compare it with the recorded one."""
        from lendml.training.run import reproduce_run

        return reproduce_run(self.tracker, run_id, service_frame=self.service_frame)
