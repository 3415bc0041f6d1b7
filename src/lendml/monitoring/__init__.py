"""Drift, delayed-label performance and the checks that trigger retraining.

The public API: :func:`monitor_drift` (drift of served decisions per window),
:func:`monitor_performance` (realised performance by vintage from delayed
:class:`Outcomes`) and :func:`monitoring_report` (both, as an HTML dashboard and JSON),
each applying the alert rules of ``monitoring:`` in lendml.yaml.
"""

from lendml.monitoring.drift import DriftMonitor, log_drift, monitor_drift
from lendml.monitoring.performance import (
    Outcomes,
    PerformanceMonitor,
    log_performance,
    measure_performance,
    monitor_performance,
)
from lendml.monitoring.report import MonitoringReport, monitoring_report

__all__ = [
    "DriftMonitor",
    "MonitoringReport",
    "Outcomes",
    "PerformanceMonitor",
    "log_drift",
    "log_performance",
    "measure_performance",
    "monitor_drift",
    "monitor_performance",
    "monitoring_report",
]
