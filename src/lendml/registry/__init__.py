"""Tracked runs and the model registry (MLflow underneath): versions, aliases, lineage.

- :class:`Tracker` records training runs: params, metrics, artifacts, code version and
  environment.
- :class:`Registry` registers a run's model as a version with its lineage, moves the
  ``champion`` / ``challenger`` / ``shadow`` aliases with a recorded history, and loads a
  version only after checking every file against the hash recorded at registration.

MLflow is imported only inside this package (and the CLI), and only when used.
"""

from lendml.registry.history import ALIASES, PromotionEvent
from lendml.registry.registry import (
    DEFAULT_ALIAS,
    LoadedModel,
    ModelVersionInfo,
    RegisteredModelInfo,
    Registry,
    parse_ref,
)
from lendml.registry.tags import (
    CODE_VERSION_TAG,
    DATA_WINDOWS_TAG,
    FEATURE_SERVICE_TAG,
    FEATURE_SERVICE_VERSION_TAG,
    LINEAGE_TAGS,
    MANIFEST_SHA256_TAG,
    MODEL_KIND_TAG,
    TRAINING_SET_FINGERPRINT_TAG,
)
from lendml.registry.tracking import Run, RunRecord, Tracker, current_user

__all__ = [
    "ALIASES",
    "CODE_VERSION_TAG",
    "DATA_WINDOWS_TAG",
    "DEFAULT_ALIAS",
    "FEATURE_SERVICE_TAG",
    "FEATURE_SERVICE_VERSION_TAG",
    "LINEAGE_TAGS",
    "MANIFEST_SHA256_TAG",
    "MODEL_KIND_TAG",
    "TRAINING_SET_FINGERPRINT_TAG",
    "LoadedModel",
    "ModelVersionInfo",
    "PromotionEvent",
    "RegisteredModelInfo",
    "Registry",
    "Run",
    "RunRecord",
    "Tracker",
    "current_user",
    "parse_ref",
]
