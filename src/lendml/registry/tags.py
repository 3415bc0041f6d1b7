"""Tag names lendml writes on MLflow runs and model versions.

Training sets the lineage tags on its run; :meth:`lendml.registry.Registry.register` copies
whichever of :data:`LINEAGE_TAGS` the run has onto the model version, next to
:data:`MANIFEST_SHA256_TAG`, the hash every load is checked against.
"""

from __future__ import annotations

# -- lineage: set on the run by training, copied onto the model version at registration
FEATURE_SERVICE_TAG = "lendml.feature_service"
FEATURE_SERVICE_VERSION_TAG = "lendml.feature_service_version"
TRAINING_SET_FINGERPRINT_TAG = "lendml.training_set_fingerprint"
CODE_VERSION_TAG = "lendml.code_version"  # also set automatically on every run
MODEL_KIND_TAG = "lendml.model_kind"  # also set by Run.log_model
DATA_WINDOWS_TAG = "lendml.data_windows"  # JSON, e.g. {"train": [start, end], ...}

LINEAGE_TAGS: tuple[str, ...] = (
    FEATURE_SERVICE_TAG,
    FEATURE_SERVICE_VERSION_TAG,
    TRAINING_SET_FINGERPRINT_TAG,
    CODE_VERSION_TAG,
    MODEL_KIND_TAG,
    DATA_WINDOWS_TAG,
)

# -- the model artifact: sha256 of its manifest (lendml-model.json). Set on the run by
# Run.log_model and on the model version by Registry.register.
MANIFEST_SHA256_TAG = "lendml.manifest_sha256"

# -- code version and environment, set automatically on every run
LENDML_VERSION_TAG = "lendml.version"
GIT_COMMIT_TAG = "lendml.git_commit"
GIT_DIRTY_TAG = "lendml.git_dirty"
PYTHON_VERSION_TAG = "lendml.python_version"
PLATFORM_TAG = "lendml.platform"
PACKAGE_TAG_PREFIX = "lendml.env."  # + distribution name, e.g. lendml.env.lightgbm
TRUNCATED_PARAMS_TAG = "lendml.truncated_params"
ENVIRONMENT_ARTIFACT = "lendml/environment.json"

# -- promotion history: registered-model tags HISTORY_TAG_PREFIX + "<seq>-<nonce>"
HISTORY_TAG_PREFIX = "lendml.history."
