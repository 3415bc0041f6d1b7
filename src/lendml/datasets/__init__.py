"""Datasets for lendml: a synthetic lending world and loaders for real public datasets.

The protected attributes of the synthetic ``borrowers`` table (gender, age_group,
ethnicity) and of the public datasets exist for fairness tests only and are never model
inputs.
"""

from lendml.datasets.public import (
    PUBLIC_DATASETS,
    PublicDataset,
    export,
    read_fdh,
    read_german,
    read_lending_club,
    read_public,
    read_taiwan,
    taiwan_statements,
)
from lendml.datasets.synth import WorldConfig, WorldSummary, generate_world

__all__ = [
    "PUBLIC_DATASETS",
    "PublicDataset",
    "WorldConfig",
    "WorldSummary",
    "export",
    "generate_world",
    "read_fdh",
    "read_german",
    "read_lending_club",
    "read_public",
    "read_taiwan",
    "taiwan_statements",
]
