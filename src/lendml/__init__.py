"""lendml: an open-source ML platform for credit, lending and payments-risk models."""

from lendml.errors import (
    ConfigError,
    DataValidationError,
    DefinitionError,
    FeatureNotFound,
    LeakageError,
    LendmlError,
)
from lendml.features.definitions import (
    Aggregation,
    Column,
    Derived,
    DerivedView,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Source,
)
from lendml.features.training_set import Label, TrainingSet
from lendml.project import Project

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "Column",
    "ConfigError",
    "DataValidationError",
    "DefinitionError",
    "Derived",
    "DerivedView",
    "Entity",
    "Feature",
    "FeatureNotFound",
    "FeatureService",
    "FeatureView",
    "Label",
    "LeakageError",
    "LendmlError",
    "Project",
    "Source",
    "TrainingSet",
    "__version__",
]
