"""Tracked runs and the model registry (MLflow underneath): versions, aliases, lineage."""
