"""The one error hierarchy of lendml.

Every error says what was wrong, where, and how to fix it. Each class also inherits the
builtin exception that matches it, so ``except KeyError`` or ``except ValueError`` keep
working for users who do not know lendml's classes::

    LendmlError (Exception)
    ├── ConfigError (ValueError)              bad lendml.yaml / settings / arguments
    ├── DefinitionError (ValueError)          a feature definition that cannot be applied
    ├── DataValidationError (ValueError)      source data breaking its declared rules
    ├── LeakageError (ValueError)             a value from after the as-of time would be used
    ├── TimeZoneError (ValueError)            mixed or unusable time zones
    ├── NotFoundError (KeyError)              a named thing does not exist
    │   ├── FeatureNotFound
    │   ├── ProjectNotFound
    │   └── ModelNotFound                     no such registered model, version or alias
    ├── EngineError (RuntimeError)            the offline engine failed
    ├── StoreError (RuntimeError)             an online/offline store failed
    ├── ArtifactError (RuntimeError)          a model artifact is missing, tampered or unsafe
    ├── RegistryError (RuntimeError)          the model registry refused or failed an action
    └── TrainingError (RuntimeError)          a model could not be trained

Errors carry ``context`` (feature view, project path, ...) and an ``http_status`` so
the HTTP layer can answer 4xx with a JSON body without knowing each class.
"""

from __future__ import annotations

from typing import Any


class LendmlError(Exception):
    """Root of every error lendml raises on purpose."""

    http_status: int = 500

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: error class, message and context."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "context": {k: str(v) for k, v in self.context.items()},
        }


class ConfigError(LendmlError, ValueError):
    """A configuration file, setting or argument is invalid."""

    http_status = 400


class DefinitionError(LendmlError, ValueError):
    """A feature definition (entity, source, view, service) cannot be applied."""

    http_status = 400


class DataValidationError(LendmlError, ValueError):
    """Source data breaks a rule declared on the source."""

    http_status = 422


class LeakageError(LendmlError, ValueError):
    """A value known only after the as-of time (or the outcome) would reach a feature."""

    http_status = 400


class TimeZoneError(LendmlError, ValueError):
    """Timestamps mix time zones or cannot be read as UTC."""

    http_status = 400


class NotFoundError(LendmlError, KeyError):
    """A named object (feature, view, service, project) does not exist."""

    http_status = 404


class FeatureNotFound(NotFoundError):
    """A feature, feature view or feature service is not in the catalog."""


class ProjectNotFound(NotFoundError):
    """No lendml.yaml where a project was expected."""


class ModelNotFound(NotFoundError):
    """A registered model, version, alias or run does not exist."""


class EngineError(LendmlError, RuntimeError):
    """The offline engine (DuckDB, Spark) failed to run a plan."""


class StoreError(LendmlError, RuntimeError):
    """An online or offline store could not be read or written."""


class ArtifactError(LendmlError, RuntimeError):
    """A model artifact is missing, was modified after it was written, or is unsafe to load."""

    http_status = 500


class RegistryError(LendmlError, RuntimeError):
    """The model registry refused an action (e.g. promoting a missing version) or failed."""

    http_status = 409


class TrainingError(LendmlError, RuntimeError):
    """Training could not produce a model (e.g. one class only, no rows left after a split)."""

    http_status = 422


class LoopBusy(LendmlError, RuntimeError):
    """Another loop pass holds the project's loop lock."""

    http_status = 409


__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataValidationError",
    "DefinitionError",
    "EngineError",
    "FeatureNotFound",
    "LeakageError",
    "LendmlError",
    "LoopBusy",
    "ModelNotFound",
    "NotFoundError",
    "ProjectNotFound",
    "RegistryError",
    "StoreError",
    "TimeZoneError",
    "TrainingError",
]
