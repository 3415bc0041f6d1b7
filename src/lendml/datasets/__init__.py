"""Datasets that ship with lendml: a synthetic lending world for demos, tests and benchmarks.

The protected attributes of the synthetic ``borrowers`` table (gender, age_group,
ethnicity) exist for fairness tests only and are never model inputs.
"""

from lendml.datasets.synth import WorldConfig, WorldSummary, generate_world

__all__ = ["WorldConfig", "WorldSummary", "generate_world"]
