"""Model kinds and their code-free, hash-checked artifact format."""

from lendml.models.artifact import Artifact, read_artifact, write_artifact
from lendml.models.base import MODEL_KINDS, Model, load_model, model_class
from lendml.models.explain import TreeExplainer
from lendml.models.reasons import ReasonCode, ReferencePoint, reason_codes, reference_point
from lendml.models.schema import FeatureSchema, FeatureSpec

__all__ = [
    "MODEL_KINDS",
    "Artifact",
    "FeatureSchema",
    "FeatureSpec",
    "Model",
    "ReasonCode",
    "ReferencePoint",
    "TreeExplainer",
    "load_model",
    "model_class",
    "read_artifact",
    "reason_codes",
    "reference_point",
    "write_artifact",
]
