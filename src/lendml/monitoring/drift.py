"""Drift of what a model actually served, from the prediction log, against its training.

Every trained model carries a frozen drift reference of its inputs and its score
(``metadata_["drift_reference"]``, see :mod:`lendml.evaluation.drift`). Monitoring reads
the decisions the model served from the prediction log, per day or week, and measures each
window against that reference: PSI with a sample-size noise floor, Jensen–Shannon, KS,
missing rates, unseen categories — for every input and for the probability served.

Shadow scores are left out by default (they were never decisions); champion and canary
responses of the version are in. What alerts is decided by the rules of ``monitoring:`` in
lendml.yaml (:mod:`lendml.monitoring.rules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from prometheus_client import CollectorRegistry, Gauge

from lendml.core.config import MonitoringSettings
from lendml.errors import ConfigError, DataValidationError
from lendml.evaluation.drift import SCORE, DriftReference, drift_by_window
from lendml.monitoring.rules import (
    ALERT_COLUMNS,
    apply_drift_rules,
    drift_alerts,
    drift_settings,
    watched_reference,
)

FEATURE_PREFIX = "features."


def log_drift(
    log: pd.DataFrame,
    reference: DriftReference,
    *,
    version: int | None = None,
    every: Literal["D", "W"] = "D",
    rules: MonitoringSettings | None = None,
    roles: Sequence[str] = ("champion", "canary"),
) -> pd.DataFrame:
    """Drift per window of a flattened prediction log (``read_prediction_log``'s frame).

    Returns one row per (window, variable): the variable ``__score__`` is the probability
    served; the other variables are the model's watched inputs. ``rules`` (default: the
    defaults of ``monitoring:``) choose the inputs and set the ``alert_*`` columns.

    Raises
    ------
    DataValidationError
        The log lacks a column the reference needs (a feature the model reads), or holds
        no record of the version and roles asked for.
    """
    need = {"time", "role", "probability"}
    missing = sorted(need - set(log.columns))
    if missing:
        raise DataValidationError(
            f"The prediction log frame lacks {missing!r}; read it with "
            "read_prediction_log(..., flatten=True)."
        )
    rows = log[log["role"].isin(list(roles))]
    if version is not None and "version" in rows.columns:
        rows = rows[rows["version"] == version]
    if rows.empty:
        raise DataValidationError(
            f"No logged record of version {version!r} with role(s) {list(roles)!r} in the "
            "window read; widen --start/--end or check the model reference."
        )
    rules = rules or MonitoringSettings()
    reference = watched_reference(reference, rules.features)
    names = list(reference.variables)
    absent = [n for n in names if FEATURE_PREFIX + n not in rows.columns]
    if absent:
        raise DataValidationError(
            f"The logged records lack the feature(s) {absent[:10]!r} that the model was "
            "trained on; was the log written by another model?"
        )
    frame = rows[[FEATURE_PREFIX + n for n in names]].set_axis(names, axis=1)
    frame = frame.assign(__time__=rows["time"].to_numpy(), __p__=rows["probability"].to_numpy())
    table = drift_by_window(
        reference,
        frame,
        time_column="__time__",
        every=every,
        score_column="__p__" if reference.score is not None else None,
        settings=drift_settings(rules.drift),
    )
    return apply_drift_rules(table, rules.drift)


@dataclass(frozen=True)
class DriftMonitor:
    """Drift of one model version over the windows read from its prediction log."""

    model: str
    version: int
    every: str
    table: pd.DataFrame
    rules: MonitoringSettings = field(default_factory=MonitoringSettings)

    @property
    def latest(self) -> pd.DataFrame:
        """The rows of the most recent window."""
        if self.table.empty:
            return self.table
        return self.table[self.table["window"] == self.table["window"].max()]

    @property
    def alerts(self) -> pd.DataFrame:
        """One row per rule fired on a (window, variable): ``rule``, ``variable``,
        ``window``, ``value``, ``threshold`` and ``detail``."""
        return drift_alerts(self.table, self.rules.drift)

    @property
    def latest_alerts(self) -> pd.DataFrame:
        """The alerts of the most recent window."""
        alerts = self.alerts
        if self.table.empty:
            return alerts
        return alerts[alerts["window"] == self.table["window"].max()]

    def to_dict(self) -> dict[str, Any]:
        table = self.table.assign(window=self.table["window"].astype(str))
        alerts = self.alerts.assign(window=self.alerts["window"].astype(str))
        return {
            "model": self.model,
            "version": self.version,
            "every": self.every,
            "rules": self.rules.drift.model_dump(mode="json"),
            "windows": sorted(table["window"].unique().tolist()),
            "alerts": _records(alerts[ALERT_COLUMNS]),
            "rows": _records(table),
        }

    def gauges(self, registry: CollectorRegistry | None = None) -> CollectorRegistry:
        """Prometheus gauges of the latest window (``lendml_drift_psi`` etc.)."""
        registry = registry or CollectorRegistry()
        labels = ["model", "version", "variable"]
        psi = Gauge("lendml_drift_psi", "PSI of the latest window", labels, registry=registry)
        floor = Gauge(
            "lendml_drift_psi_noise_floor",
            "PSI that unchanged data exceeds with probability alpha, latest window",
            labels,
            registry=registry,
        )
        alert = Gauge(
            "lendml_drift_alert",
            "1 if the variable alerts in the latest window",
            labels,
            registry=registry,
        )
        for row in self.latest.itertuples(index=False):
            key = (
                self.model,
                str(self.version),
                "score" if row.variable == SCORE else row.variable,
            )
            psi.labels(*key).set(row.psi)
            floor.labels(*key).set(row.psi_noise_floor)
            alert.labels(*key).set(1.0 if row.alert else 0.0)
        return registry


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN as ``None``."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def drift_reference_of(model: Any) -> DriftReference:
    """The frozen drift reference stored with a loaded model.

    Raises
    ------
    ConfigError
        The model was trained before lendml stored drift references; retrain it.
    """
    data = getattr(model, "metadata_", {}).get("drift_reference")
    if data is None:
        raise ConfigError(
            "This model version carries no drift reference (it was trained by an older "
            "lendml or outside `lendml train`); retrain it to monitor its drift."
        )
    return DriftReference.from_dict(data)


def monitor_drift(
    registry: Any,
    log_settings: Any,
    root: Any,
    ref: str,
    *,
    start: Any = None,
    end: Any = None,
    every: Literal["D", "W"] | None = None,
    rules: MonitoringSettings | None = None,
) -> DriftMonitor:
    """Drift of the model version ``ref`` (``NAME@champion``, ``NAME/3``) over its log.

    ``registry`` is the project's :class:`~lendml.registry.Registry`; ``log_settings`` and
    ``root`` locate the prediction log (``lendml.yaml``'s ``prediction_log:``); ``rules``
    are its ``monitoring:`` settings; ``every`` overrides ``rules.every``.
    """
    rules = rules or MonitoringSettings()
    every = every or rules.every
    from lendml.serving.prediction_log import read_prediction_log

    loaded = registry.load(ref)
    reference = drift_reference_of(loaded.model)
    log = read_prediction_log(log_settings, root, start=start, end=end, model=loaded.info.name)
    if log.empty:
        raise DataValidationError(
            f"The prediction log holds no record of {loaded.info.name!r} between {start!r} "
            f"and {end!r}; serve the model (lendml serve) or widen the window."
        )
    table = log_drift(log, reference, version=loaded.info.version, every=every, rules=rules)
    return DriftMonitor(loaded.info.name, loaded.info.version, every, table, rules)


__all__ = ["DriftMonitor", "drift_reference_of", "log_drift", "monitor_drift"]
