"""Tracked runs on MLflow: params, metrics, artifacts, code version and environment.

A :class:`Tracker` is bound to one tracking URI (``tracking.uri`` in ``lendml.yaml``) and
owns its own MLflow client; it never touches MLflow's global tracking URI or active run, so
two trackers on two backends can live in one process.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from lendml.core.config import TrackingSettings
>>> from lendml.registry import Tracker
>>> root = Path(tempfile.mkdtemp())
>>> tracker = Tracker(TrackingSettings(), root=root)
>>> with tracker.start_run(experiment="demo", run_name="first") as run:
...     run.log_params({"learning_rate": 0.05, "features": ["income", "dti"]})
...     run.log_metrics({"auc": 0.81})
>>> record = tracker.get_run(run.run_id)
>>> record.status, record.params["learning_rate"], record.metrics["auc"]
('FINISHED', '0.05', 0.81)
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lendml.errors import ArtifactError, ConfigError, LendmlError, ModelNotFound, RegistryError
from lendml.registry import tags as T
from lendml.registry._backend import (
    ALREADY_EXISTS,
    NOT_FOUND,
    Backend,
    backend_errors,
    error_code,
    redact,
    resolve_artifact_root,
)
from lendml.registry.environment import current_environment

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from lendml.core.config import TrackingSettings
    from lendml.models import Model

log = logging.getLogger(__name__)

# MLflow's limits (mlflow.utils.validation): a param value holds at most 6000 characters, a
# batch at most 100 params or tags and 1000 metrics.
MAX_PARAM_LENGTH = 6000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_MAX_TAG_LENGTH = 5000
_TRUNCATION_NOTE = "… [truncated from {n} characters; full value in artifact {path}]"


def current_user() -> str:
    """Who is acting: ``LENDML_USER`` if set, else the login name, else ``"unknown"``."""
    user = os.environ.get("LENDML_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def artifact_name(name: str | os.PathLike[str], what: str = "artifact name") -> str:
    """``name`` as a relative POSIX path inside a run's artifacts, or a ConfigError."""
    text = str(name).replace("\\", "/")
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or ".." in parts or not parts:
        raise ConfigError(
            f"The {what} {str(name)!r} must be a relative path inside the run's artifacts "
            "(e.g. 'reports/metrics.json'), without '..'."
        )
    return str(PurePosixPath(*parts))


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


@dataclass(frozen=True)
class RunRecord:
    """A finished or running run as read back from the tracking backend."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: datetime | None
    end_time: datetime | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def lineage(self) -> dict[str, str]:
        """The lineage tags (:data:`lendml.registry.tags.LINEAGE_TAGS`) this run has."""
        return {k: self.tags[k] for k in T.LINEAGE_TAGS if k in self.tags}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601 UTC, NaN metrics as ``None``)."""
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "run_name": self.run_name,
            "status": self.status,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "artifact_uri": self.artifact_uri,
            "params": dict(self.params),
            "metrics": {k: None if math.isnan(v) else v for k, v in self.metrics.items()},
            "tags": dict(self.tags),
        }

    @classmethod
    def _from_mlflow(cls, run: Any) -> RunRecord:
        info, data = run.info, run.data
        return cls(
            run_id=info.run_id,
            experiment_id=info.experiment_id,
            run_name=info.run_name,
            status=info.status,
            start_time=_ms_to_datetime(info.start_time),
            end_time=_ms_to_datetime(info.end_time),
            artifact_uri=info.artifact_uri,
            params=dict(data.params),
            metrics={k: float(v) for k, v in data.metrics.items()},
            tags=dict(data.tags),
        )


class Run:
    """A handle on one active run, yielded by :meth:`Tracker.start_run`.

    Every method writes through to the tracking backend at once (synchronously), so what
    a run logged before a crash is kept.
    """

    def __init__(self, client: MlflowClient, *, run_id: str, artifact_uri: str, uri: str):
        self._client = client
        self._uri = uri
        self.run_id = run_id
        self.artifact_uri = artifact_uri

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r})"

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; values are stringified (lists and dicts as JSON).

        A value longer than MLflow's limit (:data:`MAX_PARAM_LENGTH` characters) is
        truncated with a note naming its length, its full text is logged as the artifact
        ``lendml/params/<key>.txt``, and the key is listed in the run's
        ``lendml.truncated_params`` tag.
        """
        from mlflow.entities import Param

        items: list[Param] = []
        truncated: list[str] = []
        for key, raw in params.items():
            value = _param_value(raw)
            if len(value) > MAX_PARAM_LENGTH:
                path = f"lendml/params/{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(key))}.txt"
                self.log_text(value, path)
                note = _TRUNCATION_NOTE.format(n=len(value), path=path)
                value = value[: MAX_PARAM_LENGTH - len(note)] + note
                truncated.append(str(key))
            items.append(Param(str(key), value))
        with backend_errors(f"log params of run {self.run_id!r}", self._uri):
            for start in range(0, len(items), _PARAMS_PER_BATCH):
                self._client.log_batch(
                    self.run_id, params=items[start : start + _PARAMS_PER_BATCH], synchronous=True
                )
        if truncated:
            with backend_errors(f"read tags of run {self.run_id!r}", self._uri):
                earlier = self._client.get_run(self.run_id).data.tags.get(T.TRUNCATED_PARAMS_TAG)
            keys = sorted({*(earlier.split(",") if earlier else []), *truncated})
            self.set_tags({T.TRUNCATED_PARAMS_TAG: ",".join(keys)})

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        """Log numeric metrics at ``step`` (default 0). NaN and infinities are kept as such.

        Raises
        ------
        ConfigError
            A value is not a number.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items: list[Metric] = []
        for key, raw in metrics.items():
            try:
                value = float(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"Metric {key!r} must be a number; got {raw!r}. Log text with "
                    "log_text() or log_dict() instead.",
                ) from exc
            items.append(Metric(str(key), value, now, int(step or 0)))
        with backend_errors(f"log metrics of run {self.run_id!r}", self._uri):
            for start in range(0, len(items), _METRICS_PER_BATCH):
                self._client.log_batch(
                    self.run_id,
                    metrics=items[start : start + _METRICS_PER_BATCH],
                    synchronous=True,
                )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values stringified, cut at 5000 characters)."""
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _param_value(v)[:_MAX_TAG_LENGTH]) for k, v in tags.items()]
        with backend_errors(f"set tags on run {self.run_id!r}", self._uri):
            for start in range(0, len(items), _PARAMS_PER_BATCH):
                self._client.log_batch(
                    self.run_id, tags=items[start : start + _PARAMS_PER_BATCH], synchronous=True
                )

    def log_text(self, text: str, name: str) -> None:
        """Write ``text`` (UTF-8) as the artifact file ``name`` (e.g. ``"report.md"``)."""
        artifact = artifact_name(name)
        with backend_errors(f"log artifact {artifact!r} of run {self.run_id!r}", self._uri):
            self._client.log_text(self.run_id, text, artifact)

    def log_dict(self, obj: Any, name: str) -> None:
        """Write ``obj`` as a JSON artifact file ``name`` (keys sorted, dates as strings)."""
        self.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), name)

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """Copy the folder ``local_dir`` into the run's artifacts under ``artifact_path``."""
        folder = Path(local_dir)
        if not folder.is_dir():
            raise ConfigError(
                f"log_artifacts needs a folder; {str(folder)!r} is not one. Pass the folder "
                "that holds the files to log."
            )
        dest = None if artifact_path in (None, "") else artifact_name(artifact_path)
        with backend_errors(f"log artifacts of run {self.run_id!r}", self._uri):
            self._client.log_artifacts(self.run_id, str(folder), dest)

    def log_model(
        self,
        model: Model,
        *,
        artifact_path: str = "model",
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Save a fitted model into the run's artifacts; return its manifest sha256.

        Also sets the run tags ``lendml.manifest_sha256`` (checked again by
        :meth:`lendml.registry.Registry.register`) and ``lendml.model_kind``.
        """
        with tempfile.TemporaryDirectory(prefix="lendml-model-") as tmp:
            sha = model.save(Path(tmp) / "model", metadata=metadata)
            self.log_artifacts(Path(tmp) / "model", artifact_path)
        self.set_tags({T.MANIFEST_SHA256_TAG: sha, T.MODEL_KIND_TAG: model.kind})
        return sha


class Tracker:
    """Runs on one MLflow tracking backend.

    Parameters
    ----------
    settings
        The ``tracking:`` settings of ``lendml.yaml``. A relative ``sqlite:///`` path and
        the ``artifacts`` folder resolve against ``root``; an ``artifacts`` value with a
        scheme (``s3://…``, ``mlflow-artifacts:/…``) is used as given, and an empty one lets
        a tracking server choose.
    root
        The project folder.
    default_experiment
        The experiment used when neither :meth:`start_run` nor ``settings.experiment``
        names one (the CLI passes the project's name).
    """

    def __init__(
        self,
        settings: TrackingSettings,
        *,
        root: str | os.PathLike[str],
        default_experiment: str = "lendml",
    ) -> None:
        self.settings = settings
        self.root = Path(root).resolve()
        self._backend = Backend(settings, self.root)
        self.tracking_uri = self._backend.uri
        self.default_experiment = settings.experiment or default_experiment
        self._experiments: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Tracker(tracking_uri={redact(self.tracking_uri)!r})"

    @property
    def _client(self) -> MlflowClient:
        return self._backend.client

    # ------------------------------------------------------------------ experiments

    def ensure_experiment(self, name: str | None = None) -> str:
        """The id of experiment ``name`` (default :attr:`default_experiment`), created if new.

        A new experiment stores its artifacts under ``<artifacts>/<name>``.
        """
        from mlflow.exceptions import MlflowException

        name = name or self.default_experiment
        if name in self._experiments:
            return self._experiments[name]
        with backend_errors(f"read or create experiment {name!r}", self.tracking_uri):
            exp = self._client.get_experiment_by_name(name)
            if exp is None:
                base = resolve_artifact_root(self.settings.artifacts, self.root, self.tracking_uri)
                slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
                location = None if base is None else f"{base.rstrip('/')}/{slug}"
                try:
                    exp_id = self._client.create_experiment(name, artifact_location=location)
                except MlflowException as exc:  # created meanwhile by another process
                    if error_code(exc) != ALREADY_EXISTS:
                        raise
                    exp = self._client.get_experiment_by_name(name)
                    exp_id = exp.experiment_id
            elif exp.lifecycle_stage == "deleted":
                raise RegistryError(
                    f"Experiment {name!r} was deleted in MLflow. Restore it "
                    f"(`mlflow experiments restore --experiment-id {exp.experiment_id}`) or "
                    "set another `tracking.experiment` in lendml.yaml.",
                    experiment=name,
                )
            else:
                exp_id = exp.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    # ------------------------------------------------------------------ runs

    @contextmanager
    def start_run(
        self,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Iterator[Run]:
        """Start a run; yield its :class:`Run` handle; end it FINISHED or FAILED.

        The run records the code version (lendml version, git commit and dirty flag of
        the working folder's repository) and environment (Python, platform, versions of
        key packages) as tags and as the artifact ``lendml/environment.json``. ``tags``
        are set on top and win over the automatic ones.

        If the block raises, the run ends ``FAILED`` (``KILLED`` on ``KeyboardInterrupt``)
        with the error in its ``lendml.error`` tag, and the exception propagates.
        """
        exp_id = self.ensure_experiment(experiment)
        env = current_environment()
        all_tags = {**env.tags(), "mlflow.user": current_user(), **dict(tags or {})}
        with backend_errors(f"start a run in experiment {exp_id!r}", self.tracking_uri):
            created = self._client.create_run(
                exp_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()}
            )
        run = Run(
            self._client,
            run_id=created.info.run_id,
            artifact_uri=created.info.artifact_uri,
            uri=self.tracking_uri,
        )
        try:
            run.log_dict(env.to_dict(), T.ENVIRONMENT_ARTIFACT)
            yield run
        except BaseException as exc:
            status = "FAILED" if isinstance(exc, Exception) else "KILLED"
            self._end_run_after_error(run.run_id, status, exc)
            raise
        with backend_errors(f"end run {run.run_id!r}", self.tracking_uri):
            self._client.set_terminated(run.run_id, "FINISHED")

    def _end_run_after_error(self, run_id: str, status: str, exc: BaseException) -> None:
        """Mark the run ended; a backend failure here is logged so ``exc`` still propagates."""
        try:
            with backend_errors(f"end run {run_id!r}", self.tracking_uri):
                message = f"{type(exc).__name__}: {exc}"[:_MAX_TAG_LENGTH]
                self._client.set_tag(run_id, "lendml.error", message)
                self._client.set_terminated(run_id, status)
        except LendmlError as end_exc:
            log.warning("Run %s could not be marked %s: %s", run_id, status, end_exc)

    def get_run(self, run_id: str) -> RunRecord:
        """A run's params, metrics, tags, status and artifact URI.

        Raises
        ------
        ModelNotFound
            No run has this id.
        RegistryError
            The tracking backend cannot be read.
        """
        from mlflow.exceptions import MlflowException

        with backend_errors(f"read run {run_id!r}", self.tracking_uri):
            try:
                run = self._client.get_run(run_id)
            except MlflowException as exc:
                if error_code(exc) in (NOT_FOUND, "INVALID_PARAMETER_VALUE"):
                    raise ModelNotFound(
                        f"No run with id {run_id!r} at tracking URI "
                        f"{redact(self.tracking_uri)!r}. Copy the id from the training output "
                        "or find it with Tracker.search_runs().",
                        run_id=run_id,
                    ) from exc
                raise
        return RunRecord._from_mlflow(run)

    def search_runs(
        self,
        experiment: str | None = None,
        *,
        filter: str | None = None,
        max_results: int = 1000,
        order_by: list[str] | None = None,
    ) -> list[RunRecord]:
        """Runs of ``experiment`` (default :attr:`default_experiment`), newest first.

        ``filter`` is an MLflow search expression, e.g.
        ``"metrics.auc > 0.8 and tags.`lendml.feature_service` = 'credit_v1'"``.

        Raises
        ------
        ModelNotFound
            No experiment has this name; the message lists the ones that exist.
        """
        name = experiment or self.default_experiment
        with backend_errors(f"search runs of experiment {name!r}", self.tracking_uri):
            exp = self._client.get_experiment_by_name(name)
            if exp is None:
                names = sorted(e.name for e in self._client.search_experiments(max_results=100))
                raise ModelNotFound(
                    f"No experiment named {name!r}; existing experiments: "
                    f"{', '.join(names) or '(none)'}.",
                    experiment=name,
                )
            runs = self._client.search_runs(
                [exp.experiment_id],
                filter_string=filter or "",
                max_results=max_results,
                order_by=order_by or ["attributes.start_time DESC"],
            )
        return [RunRecord._from_mlflow(r) for r in runs]

    def download_artifacts(self, run_id: str, path: str, dst: str | os.PathLike[str]) -> Path:
        """Copy the run's artifact ``path`` (file or folder) into the folder ``dst``.

        Returns the local path of the copy (``dst / path``).

        Raises
        ------
        ModelNotFound
            No run has this id.
        ArtifactError
            The run has no artifact at ``path``.
        """
        self.get_run(run_id)
        return download_run_artifacts(
            self._client, run_id, path, Path(dst), tracking_uri=self.tracking_uri
        )


def download_run_artifacts(
    client: MlflowClient, run_id: str, path: str, dst: Path, *, tracking_uri: str
) -> Path:
    """Download a run's artifact through ``client``; a missing artifact is an ArtifactError."""
    artifact = artifact_name(path, "artifact path")
    dst.mkdir(parents=True, exist_ok=True)
    try:
        with backend_errors(f"download {artifact!r} of run {run_id!r}", tracking_uri):
            listed = client.list_artifacts(run_id, artifact)
            parent = str(PurePosixPath(artifact).parent)
            siblings = client.list_artifacts(run_id, None if parent == "." else parent)
            if not listed and artifact not in {f.path for f in siblings}:
                raise ArtifactError(
                    f"Run {run_id!r} has no artifact {artifact!r}; it has: "
                    f"{', '.join(sorted(f.path for f in siblings)) or '(none)'}. Log the "
                    "model with Run.log_model() (artifact path 'model') before registering.",
                    run_id=run_id,
                    artifact=artifact,
                )
            local = client.download_artifacts(run_id, artifact, dst_path=str(dst))
    except ModelNotFound as exc:
        raise ArtifactError(
            f"Run {run_id!r} has no artifact {artifact!r}: {exc.message}", run_id=run_id
        ) from exc
    return Path(local)


__all__ = ["MAX_PARAM_LENGTH", "Run", "RunRecord", "Tracker", "current_user"]
