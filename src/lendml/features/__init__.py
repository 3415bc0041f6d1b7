"""Feature definitions, the catalog, point-in-time plans and materialization."""
