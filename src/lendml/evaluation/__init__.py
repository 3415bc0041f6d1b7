"""Credit-grade evaluation: discrimination, calibration, stability, fair lending, reports."""
