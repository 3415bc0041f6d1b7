"""The model registry on MLflow: versions with lineage, aliases with a history, safe loading.

A version is registered from a finished training run whose ``model`` artifact passes
:func:`lendml.models.load_model`'s checks; the sha256 of its manifest is stored on the
version and every later load, promotion and rollback re-checks the downloaded files
against it. Nothing is ever unpickled: model files are LightGBM text, JSON or safetensors.

Aliases are lendml's three: ``champion`` (what serving scores with), ``challenger`` (the
candidate being evaluated) and ``shadow`` (scored alongside, never acted on). Each move of
an alias is recorded with who, when and why (:mod:`lendml.registry.history`).

Examples
--------
>>> from lendml.registry import Registry                      # doctest: +SKIP
>>> reg = Registry(settings, root=".")                         # doctest: +SKIP
>>> v = reg.register(run_id, "credit_pd")                      # doctest: +SKIP
>>> reg.promote("credit_pd", v.version, reason="first model")  # doctest: +SKIP
>>> scored = reg.load("credit_pd@champion").model.predict_proba(X)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lendml.errors import ArtifactError, ConfigError, LendmlError, ModelNotFound, RegistryError
from lendml.models import load_model, read_artifact
from lendml.models.artifact import MANIFEST
from lendml.registry import history as H
from lendml.registry import tags as T
from lendml.registry._backend import (
    ALREADY_EXISTS,
    NOT_FOUND,
    Backend,
    backend_errors,
    error_code,
    redact,
)
from lendml.registry.history import PromotionEvent
from lendml.registry.tracking import artifact_name, current_user, download_run_artifacts

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel
    from mlflow.tracking import MlflowClient

    from lendml.core.config import TrackingSettings
    from lendml.models import Model

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_ALIAS = "champion"
_PAGE = 1000
_SHOWN = 20  # names listed in an error message


def _ms(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _listing(values: list[Any]) -> str:
    if not values:
        return "(none)"
    shown = ", ".join(str(v) for v in values[:_SHOWN])
    return shown + (f", … ({len(values)} in all)" if len(values) > _SHOWN else "")


def check_name(name: str) -> str:
    """``name`` if it is a valid registered-model name, else a ConfigError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"Model name {name!r} is not valid: use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 128 characters), e.g. 'credit_pd'.",
            name=str(name),
        )
    return name


def check_version(version: int | str) -> int:
    """``version`` as a positive int, else a ConfigError."""
    try:
        number = int(str(version).strip().lstrip("v"))
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(
            f"Model version {version!r} is not valid; versions are whole numbers from 1.",
            version=str(version),
        )
    return number


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """Split ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (the champion).

    A leading ``models:/`` (MLflow's spelling) is accepted. Returns ``(name, version,
    alias)`` with exactly one of ``version`` and ``alias`` set.
    """
    text = ref.strip().removeprefix("models:/")
    if "@" in text:
        name, alias = text.rsplit("@", 1)
        if not alias:
            raise ConfigError(f"Model reference {ref!r} ends with '@'; add an alias.")
        return check_name(name), None, alias
    if "/" in text:
        name, version = text.rsplit("/", 1)
        return check_name(name), check_version(version), None
    return check_name(text), None, DEFAULT_ALIAS


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version and where it came from."""

    name: str
    version: int
    run_id: str | None
    source: str
    manifest_sha256: str | None
    lineage: dict[str, str]
    aliases: tuple[str, ...]
    created_at: datetime
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``NAME/VERSION``: a reference that always means this version."""
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``created_at`` as ISO-8601 UTC)."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "manifest_sha256": self.manifest_sha256,
            "lineage": dict(self.lineage),
            "aliases": list(self.aliases),
            "created_at": self.created_at.isoformat(),
            "description": self.description,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True)
class RegisteredModelInfo:
    """A registered model: its versions (oldest first), aliases and description."""

    name: str
    description: str | None
    aliases: dict[str, int]
    versions: tuple[ModelVersionInfo, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def latest_version(self) -> int | None:
        return max((v.version for v in self.versions), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "aliases": dict(self.aliases),
            "latest_version": self.latest_version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "versions": [v.to_dict() for v in self.versions],
        }


@dataclass(frozen=True)
class LoadedModel:
    """A verified model, ready to score, with the version it was loaded from."""

    model: Model
    info: ModelVersionInfo
    path: Path


class Registry:
    """Registered models on MLflow's model registry (the same URI as tracking).

    Parameters
    ----------
    settings
        The ``tracking:`` settings of ``lendml.yaml``; a relative SQLite path resolves
        against ``root``.
    root
        The project folder.
    cache_dir
        Where :meth:`load` keeps downloaded versions (default ``<root>/data/model-cache``).
        A cached copy is re-verified on every load.
    """

    def __init__(
        self,
        settings: TrackingSettings,
        *,
        root: str | os.PathLike[str],
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = settings
        self.root = Path(root).resolve()
        self._backend = Backend(settings, self.root)
        self.tracking_uri = self._backend.uri
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / "data" / "model-cache"

    def __repr__(self) -> str:
        return f"Registry(tracking_uri={redact(self.tracking_uri)!r})"

    @property
    def _client(self) -> MlflowClient:
        return self._backend.client

    # ------------------------------------------------------------------ reading

    def _registered(self, name: str) -> RegisteredModel:
        from mlflow.exceptions import MlflowException

        check_name(name)
        with backend_errors(f"read registered model {name!r}", self.tracking_uri):
            try:
                return self._client.get_registered_model(name)
            except MlflowException as exc:
                if error_code(exc) != NOT_FOUND:
                    raise
            names = [m.name for m in self._search_models()]
        raise ModelNotFound(
            f"No registered model {name!r}; registered models: {_listing(sorted(names))}. "
            "Register one with `lendml models register RUN_ID --name NAME`.",
            model=name,
        )

    def _search_models(self) -> list[RegisteredModel]:
        out: list[RegisteredModel] = []
        token = None
        while True:
            page = self._client.search_registered_models(max_results=_PAGE, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _search_versions(self, filter_string: str) -> list[ModelVersion]:
        out: list[ModelVersion] = []
        token = None
        while True:
            page = self._client.search_model_versions(
                filter_string, max_results=_PAGE, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    @staticmethod
    def _info(mv: ModelVersion, aliases: dict[str, int]) -> ModelVersionInfo:
        tags = dict(mv.tags or {})
        version = int(mv.version)
        return ModelVersionInfo(
            name=mv.name,
            version=version,
            run_id=mv.run_id or None,
            source=mv.source,
            manifest_sha256=tags.get(T.MANIFEST_SHA256_TAG),
            lineage={k: tags[k] for k in T.LINEAGE_TAGS if k in tags},
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            created_at=_ms(mv.creation_timestamp),
            description=mv.description or None,
            tags=tags,
        )

    @staticmethod
    def _aliases(rm: RegisteredModel) -> dict[str, int]:
        return {str(a): int(v) for a, v in (rm.aliases or {}).items()}

    def _model_info(self, rm: RegisteredModel, versions: list[ModelVersion]) -> RegisteredModelInfo:
        aliases = self._aliases(rm)
        infos = sorted((self._info(mv, aliases) for mv in versions), key=lambda i: i.version)
        return RegisteredModelInfo(
            name=rm.name,
            description=rm.description or None,
            aliases=aliases,
            versions=tuple(infos),
            created_at=_ms(rm.creation_timestamp),
            updated_at=_ms(rm.last_updated_timestamp),
        )

    def list_models(self) -> list[RegisteredModelInfo]:
        """Every registered model with its versions and aliases, by name."""
        with backend_errors("list registered models", self.tracking_uri):
            models = self._search_models()
            versions = self._search_versions("")
        by_name: dict[str, list[ModelVersion]] = {}
        for mv in versions:
            by_name.setdefault(mv.name, []).append(mv)
        infos = [self._model_info(rm, by_name.get(rm.name, [])) for rm in models]
        return sorted(infos, key=lambda m: m.name)

    def get_model(self, name: str) -> RegisteredModelInfo:
        """One registered model: versions, aliases, description.

        Raises
        ------
        ModelNotFound
            No model has this name; the message lists the registered ones.
        """
        rm = self._registered(name)
        with backend_errors(f"list versions of model {name!r}", self.tracking_uri):
            versions = self._search_versions(f"name = '{name}'")
        return self._model_info(rm, versions)

    def get_version(self, name: str, version: int | str) -> ModelVersionInfo:
        """One version of a registered model.

        Raises
        ------
        ModelNotFound
            No such model or version; the message lists what exists.
        """
        from mlflow.exceptions import MlflowException

        number = check_version(version)
        rm = self._registered(name)
        with backend_errors(f"read version {number} of model {name!r}", self.tracking_uri):
            try:
                mv = self._client.get_model_version(name, str(number))
            except MlflowException as exc:
                if error_code(exc) != NOT_FOUND:
                    raise
                mv = None
            if mv is None:
                existing = sorted(int(v.version) for v in self._search_versions(f"name = '{name}'"))
                raise ModelNotFound(
                    f"Model {name!r} has no version {number}; its versions: {_listing(existing)}.",
                    model=name,
                    version=number,
                )
        return self._info(mv, self._aliases(rm))

    def resolve(self, ref: str) -> ModelVersionInfo:
        """The version a reference names: ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME``.

        A bare ``NAME`` means ``NAME@champion``.

        Raises
        ------
        ModelNotFound
            The model, version or alias does not exist; the message lists what does.
        """
        name, version, alias = parse_ref(ref)
        if version is not None:
            return self.get_version(name, version)
        rm = self._registered(name)
        aliases = self._aliases(rm)
        if alias not in aliases:
            held = ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items()))
            raise ModelNotFound(
                f"Model {name!r} has no alias {alias!r}; its aliases: {held or '(none)'}. "
                f"Promote a version with `lendml models promote {name} VERSION --alias "
                f"{alias} --reason TEXT`, or name a version as {name}/VERSION.",
                model=name,
                alias=alias,
            )
        return self.get_version(name, aliases[str(alias)])

    # ------------------------------------------------------------------ registering

    def register(
        self,
        run_id: str,
        name: str,
        *,
        artifact_path: str = "model",
        description: str | None = None,
    ) -> ModelVersionInfo:
        """Register the model a run logged as a new version of ``name``.

        The run's artifact folder is downloaded and verified with
        :func:`lendml.models.load_model` (and against the run's ``lendml.manifest_sha256``
        tag if it has one). The version records the manifest's sha256 and the run's
        lineage tags. Registering the same run and artifact again returns the existing
        version instead of a duplicate.

        Raises
        ------
        ModelNotFound
            No run has this id.
        ArtifactError
            The run has no artifact at ``artifact_path``, or it fails verification.
        RegistryError
            The run failed, or the registry cannot be written.
        """
        from mlflow.exceptions import MlflowException

        check_name(name)
        run = self._get_run(run_id)
        if run.info.status in ("FAILED", "KILLED"):
            raise RegistryError(
                f"Run {run_id!r} ended {run.info.status}; only a run that finished can be "
                "registered. Re-run training and register the new run.",
                run_id=run_id,
            )
        source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_name(artifact_path)}"
        with tempfile.TemporaryDirectory(prefix="lendml-register-") as tmp:
            local = download_run_artifacts(
                self._client, run_id, artifact_path, Path(tmp), tracking_uri=self.tracking_uri
            )
            expected = run.data.tags.get(T.MANIFEST_SHA256_TAG)
            artifact = read_artifact(local, expected_sha256=expected)
            load_model(local, expected_sha256=artifact.manifest_sha256)
        sha = artifact.manifest_sha256
        lineage = {k: run.data.tags[k] for k in T.LINEAGE_TAGS if k in run.data.tags}
        lineage.setdefault(T.MODEL_KIND_TAG, artifact.kind)
        with backend_errors(f"register run {run_id!r} as model {name!r}", self.tracking_uri):
            try:
                self._client.create_registered_model(name)
            except MlflowException as exc:
                if error_code(exc) != ALREADY_EXISTS:
                    raise
            same_run = f"name = '{name}' and run_id = '{run.info.run_id}'"
            for mv in self._search_versions(same_run):
                if mv.source == source and (mv.tags or {}).get(T.MANIFEST_SHA256_TAG) == sha:
                    log.info("Run %s is already %s version %s", run_id, name, mv.version)
                    return self.get_version(name, int(mv.version))
            mv = self._client.create_model_version(
                name,
                source,
                run_id=run_id,
                tags={T.MANIFEST_SHA256_TAG: sha, **lineage},
                description=description,
            )
        return self.get_version(name, int(mv.version))

    def _get_run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        with backend_errors(f"read run {run_id!r}", self.tracking_uri):
            try:
                return self._client.get_run(run_id)
            except MlflowException as exc:
                if error_code(exc) not in (NOT_FOUND, "INVALID_PARAMETER_VALUE"):
                    raise
        raise ModelNotFound(
            f"No run with id {run_id!r} at tracking URI {redact(self.tracking_uri)!r}; "
            "copy the id from the training output.",
            run_id=run_id,
        )

    # ------------------------------------------------------------------ loading

    def _download(self, info: ModelVersionInfo, dest: Path) -> None:
        """Download a version's artifact folder to ``dest`` atomically (stage, rename)."""
        from mlflow.artifacts import download_artifacts

        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            try:
                with backend_errors(f"download {info.ref} from {info.source!r}", self.tracking_uri):
                    local = Path(
                        download_artifacts(
                            artifact_uri=info.source,
                            dst_path=str(staging),
                            tracking_uri=self.tracking_uri,
                        )
                    )
            except LendmlError as exc:
                raise ArtifactError(
                    f"The artifact of model {info.ref} cannot be read from {info.source!r}: "
                    f"{exc.message}",
                    model=info.name,
                    version=info.version,
                ) from exc
            if not local.is_dir():
                raise ArtifactError(
                    f"The source of model {info.ref} ({info.source!r}) is not a folder.",
                    model=info.name,
                    version=info.version,
                )
            try:
                os.replace(local, dest)
            except OSError:
                if not dest.is_dir():  # not another process's copy: a real failure
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _verified(self, info: ModelVersionInfo) -> str:
        if not info.manifest_sha256:
            raise ArtifactError(
                f"Model {info.ref} has no {T.MANIFEST_SHA256_TAG!r} tag, so its files cannot "
                "be verified; it was not registered by lendml. Register its run with "
                "Registry.register().",
                model=info.name,
                version=info.version,
            )
        return info.manifest_sha256

    def load(self, ref: str, *, cache_dir: str | os.PathLike[str] | None = None) -> LoadedModel:
        """Load a registered version, verified against the sha256 recorded at registration.

        The version's folder is downloaded once into ``<cache>/<name>/<version>-<sha>``;
        every load — cached or not — re-checks the manifest's hash and every file's hash,
        so a changed byte in the cache or in the artifact store is refused.

        Raises
        ------
        ModelNotFound
            ``ref`` names no version.
        ArtifactError
            The files differ from what was registered (nothing is loaded).
        """
        info = self.resolve(ref)
        sha = self._verified(info)
        folder = Path(cache_dir or self.cache_dir) / info.name / f"{info.version}-{sha[:12]}"
        if not (folder / MANIFEST).is_file():
            self._download(info, folder)
        try:
            model = load_model(folder, expected_sha256=sha)
        except ArtifactError as exc:
            raise ArtifactError(
                f"{exc.message} (model {info.ref}, cached at {str(folder)!r}: delete that "
                "folder to download the version again; if the artifact store's copy was "
                "changed too, the download is refused the same way.)",
                model=info.name,
                version=info.version,
            ) from exc
        return LoadedModel(model=model, info=info, path=folder)

    def verify(self, ref: str) -> ModelVersionInfo:
        """Download a version afresh (no cache) and check it; return its info.

        Raises
        ------
        ArtifactError
            The stored files differ from what was registered.
        """
        info = self.resolve(ref)
        sha = self._verified(info)
        with tempfile.TemporaryDirectory(prefix="lendml-verify-") as tmp:
            folder = Path(tmp) / "model"
            self._download(info, folder)
            load_model(folder, expected_sha256=sha)
        return info

    # ------------------------------------------------------------------ aliases

    def promote(
        self,
        name: str,
        version: int | str,
        *,
        alias: str = DEFAULT_ALIAS,
        reason: str,
        user: str | None = None,
    ) -> PromotionEvent:
        """Point ``alias`` at ``version`` and record who, when and why.

        Fails closed: the model, the version and the current aliases are read first, and
        the version's stored files are verified; if any of that fails nothing changes.
        Promoting the version that already holds the alias changes nothing and returns
        the event that gave it the alias.

        Raises
        ------
        ConfigError
            ``alias`` is not ``champion``, ``challenger`` or ``shadow``, or no reason.
        ModelNotFound
            No such model or version.
        ArtifactError
            The version's files fail verification.
        RegistryError
            The registry cannot be read or written.
        """
        H.check_alias(alias)
        why = H.check_reason(reason)
        who = (user or "").strip() or current_user()
        info = self.get_version(name, version)
        rm = self._registered(name)
        current = self._aliases(rm).get(alias)
        events = H.read_events(rm.tags or {})
        if current == info.version:
            mine = [e for _, e in events if e.alias == alias and e.state == "done"]
            if mine and mine[-1].version == info.version:
                return mine[-1]
        self.verify(info.ref)
        event = H.new_event(
            alias=alias,
            version=info.version,
            previous_version=current,
            user=who,
            reason=why,
            action="promote",
            seq=H.next_seq(events),
        )
        return self._record(name, event)

    def rollback(
        self,
        name: str,
        *,
        alias: str = DEFAULT_ALIAS,
        reason: str,
        user: str | None = None,
    ) -> PromotionEvent:
        """Give ``alias`` back to the version that held it before the current one.

        The previous holder comes from the history (a rollback undoes the last promotion
        that is still in effect; two rollbacks undo two promotions).

        Raises
        ------
        RegistryError
            The history has no previous holder, or the alias was moved outside lendml
            (the history's last holder is not the current one), or the registry fails.
        ModelNotFound
            The previous holder's version was deleted.
        ArtifactError
            The previous holder's files fail verification.
        """
        H.check_alias(alias)
        why = H.check_reason(reason)
        who = (user or "").strip() or current_user()
        rm = self._registered(name)
        current = self._aliases(rm).get(alias)
        events = H.read_events(rm.tags or {})
        stack = H.holders([e for _, e in events], alias, current)
        if stack and stack[-1] != current:
            raise RegistryError(
                f"Alias {alias!r} of model {name!r} points at version {current}, but its "
                f"history ends with version {stack[-1]}: it was moved outside lendml. "
                f"Choose the version yourself: `lendml models promote {name} VERSION "
                f"--alias {alias} --reason TEXT`.",
                model=name,
                alias=alias,
            )
        if len(stack) < 2:
            raise RegistryError(
                f"Alias {alias!r} of model {name!r} has no previous holder in its history "
                f"(holders so far: {_listing(stack)}); there is nothing to roll back to. "
                f"Promote a version instead: `lendml models promote {name} VERSION "
                f"--alias {alias} --reason TEXT`.",
                model=name,
                alias=alias,
            )
        target = self.verify(f"{name}/{stack[-2]}")
        event = H.new_event(
            alias=alias,
            version=target.version,
            previous_version=current,
            user=who,
            reason=why,
            action="rollback",
            seq=H.next_seq(events),
        )
        return self._record(name, event)

    def _record(self, name: str, event: PromotionEvent) -> PromotionEvent:
        """Write the event (pending), move the alias, confirm the event (done or failed)."""
        key = H.tag_key(event.seq)
        what = f"{event.action} {name}/{event.version} to {event.alias!r}"
        self._set_tag(name, key, H.encode(event), f"record the {what}")
        try:
            with backend_errors(what, self.tracking_uri):
                self._client.set_registered_model_alias(name, event.alias, str(event.version))
        except LendmlError:
            try:
                self._set_tag(name, key, H.encode(H.failed(event)), f"mark {key} failed")
            except LendmlError as exc:
                log.warning("History event %s of %s stays pending: %s", key, name, exc)
            raise
        finished = H.done(event)
        self._set_tag(
            name,
            key,
            H.encode(finished),
            f"confirm history event {key} (the alias was moved; the event stays 'pending')",
        )
        return finished

    def _set_tag(self, name: str, key: str, value: str, action: str) -> None:
        with backend_errors(action, self.tracking_uri):
            self._client.set_registered_model_tag(name, key, value)

    def history(self, name: str, alias: str | None = None) -> list[PromotionEvent]:
        """The promotions and rollbacks of a model (of one alias if given), oldest first.

        Raises
        ------
        ModelNotFound
            No model has this name.
        ConfigError
            ``alias`` is not one lendml manages.
        """
        if alias is not None:
            H.check_alias(alias)
        rm = self._registered(name)
        events = [e for _, e in H.read_events(rm.tags or {})]
        return [e for e in events if alias is None or e.alias == alias]


__all__ = [
    "DEFAULT_ALIAS",
    "LoadedModel",
    "ModelVersionInfo",
    "RegisteredModelInfo",
    "Registry",
    "parse_ref",
]
