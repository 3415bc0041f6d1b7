"""Realised performance of served decisions: the prediction log joined to outcomes.

Outcomes arrive months after the decision, in a table with the entity key, the label
(1 = bad) and when it was observed. Each logged decision of the model (champion and canary
roles; shadow scores were never decisions) is joined to its entity's outcome, and
:func:`lendml.evaluation.vintage.performance_by_vintage` measures every vintage on the
outcomes observed by the as-of time only. Declined applicants have no outcome: the figures
describe the approved book (selection bias — see docs/monitoring.md).

:func:`monitor_performance` adds the decay rule of ``monitoring:`` in lendml.yaml: a
vintage's realised AUC against the AUC the model version showed at training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Gauge

from lendml.core.config import MonitoringSettings
from lendml.errors import ConfigError, DataValidationError
from lendml.evaluation.vintage import performance_by_vintage
from lendml.monitoring.rules import (
    ALERT_COLUMNS,
    auc_upper_bound,
    decay_alerts,
    eligible_vintages,
)

_ROLES = ("champion", "canary")


@dataclass(frozen=True)
class Outcomes:
    """Delayed outcomes: one row per entity ``key`` (as logged, ``entity.<key>``) with the
    ``label`` (1 = bad) and when it was ``observed_at``."""

    frame: pd.DataFrame
    key: str
    label: str = "label"
    observed_at: str = "observed_at"

    @classmethod
    def read(
        cls, path: str | Path, *, key: str, label: str = "label", observed_at: str = "observed_at"
    ) -> Outcomes:
        """Outcomes from a ``.parquet``, ``.csv`` or ``.csv.gz`` file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"The outcomes file {str(path)!r} does not exist or is not a file.")
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path)
        else:
            raise ConfigError(f"Outcomes must be .parquet, .csv or .csv.gz; got {path.name!r}.")
        return cls(frame, key=key, label=label, observed_at=observed_at)


def _joined(
    log: pd.DataFrame,
    outcomes: Outcomes,
    *,
    version: int | None,
    roles: Sequence[str],
) -> pd.DataFrame:
    """Decisions of ``log`` with ``__label__`` and ``__observed__`` of their entity."""
    key, label, observed_at = outcomes.key, outcomes.label, outcomes.observed_at
    column = f"entity.{key}"
    for name, frame, cols in (
        ("prediction log", log, [column, "time", "probability", "role"]),
        ("outcomes", outcomes.frame, [key, label, observed_at]),
    ):
        absent = [c for c in cols if c not in frame.columns]
        if absent:
            raise DataValidationError(
                f"The {name} lacks the column(s) {absent!r}; got "
                f"{list(map(str, frame.columns))[:20]!r}."
            )
    table = outcomes.frame
    if table[key].duplicated().any():
        dup = table.loc[table[key].duplicated(), key].iloc[:5].tolist()
        raise DataValidationError(
            f"The outcomes hold more than one row for entity key(s) {dup!r}; keep one "
            "outcome per loan."
        )
    rows = log[log["role"].isin(list(roles))]
    if version is not None and "version" in rows.columns:
        rows = rows[rows["version"] == version]
    # keys are compared as text: the log keeps JSON scalars, outcome files may differ
    left = rows.assign(__key__=rows[column].astype(str))
    right = table[[key, label, observed_at]].assign(__key__=table[key].astype(str))
    joined = left.merge(right.drop(columns=[key]), on="__key__", how="left")
    return joined.rename(columns={label: "__label__", observed_at: "__observed__"})


def _by_vintage(joined: pd.DataFrame, as_of: Any, min_labels: int) -> pd.DataFrame:
    return performance_by_vintage(
        joined,
        as_of=as_of,
        score="probability",
        label="__label__",
        decided_at="time",
        observed_at="__observed__",
        min_labels=min_labels,
    )


def log_performance(
    log: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    key: str,
    label: str,
    observed_at: str,
    as_of: Any,
    version: int | None = None,
    roles: Sequence[str] = ("champion", "canary"),
    min_labels: int = 30,
) -> pd.DataFrame:
    """Performance by vintage of a flattened prediction log (``read_prediction_log``).

    ``outcomes`` holds one row per entity ``key`` (the log's ``entity.<key>``) with
    ``label`` and ``observed_at``; an entity decided several times is joined on each
    decision (the outcome of its loan belongs to its last decision before the outcome —
    keep one decision per loan in the log, e.g. one application id per entity key).

    Raises
    ------
    DataValidationError
        A column is missing, or an entity has more than one outcome.
    """
    joined = _joined(
        log,
        Outcomes(outcomes, key=key, label=label, observed_at=observed_at),
        version=version,
        roles=roles,
    )
    return _by_vintage(joined, as_of, min_labels)


def _utc(when: Any) -> pd.Timestamp:
    t = pd.Timestamp(when)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@dataclass(frozen=True)
class PerformanceMonitor:
    """Realised performance of a model's served decisions by vintage, with decay alerts.

    ``reference_auc`` is the AUC the version showed at training (``None``: unknown, the
    decay rule is not evaluated, ``notes`` says why).
    """

    model: str
    version: int | None
    as_of: pd.Timestamp
    table: pd.DataFrame
    reference_auc: float | None
    alerts: pd.DataFrame
    rules: MonitoringSettings = field(default_factory=MonitoringSettings)
    notes: tuple[str, ...] = ()

    @property
    def latest_vintage(self) -> str | None:
        """The newest vintage the decay rule judges (enough mature labels), if any."""
        judged = eligible_vintages(self.table, self.rules) if len(self.table) else self.table
        return str(judged["vintage"].max()) if len(judged) else None

    @property
    def latest_alerts(self) -> pd.DataFrame:
        """Decay alerts of :attr:`latest_vintage`."""
        return self.alerts[self.alerts["window"] == self.latest_vintage]

    def to_dict(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return frame.astype(object).where(frame.notna(), None).to_dict("records")

        return {
            "model": self.model,
            "version": self.version,
            "as_of": self.as_of.isoformat(),
            "reference_auc": self.reference_auc,
            "rules": self.rules.decay.model_dump(mode="json"),
            "notes": list(self.notes),
            "alerts": records(self.alerts[ALERT_COLUMNS]),
            "vintages": records(self.table),
        }

    def gauges(self, registry: CollectorRegistry | None = None) -> CollectorRegistry:
        """Prometheus gauges per vintage: ``lendml_performance_auc``, ``_ks``,
        ``_bad_rate``, ``_mature_labels``; and ``lendml_performance_reference_auc``."""
        registry = registry or CollectorRegistry()
        labels = ["model", "version", "vintage"]
        version = "all" if self.version is None else str(self.version)
        gauges = {
            column: Gauge(
                f"lendml_performance_{name}",
                f"Realised {text} of served decisions by vintage, mature labels only",
                labels,
                registry=registry,
            )
            for column, name, text in (
                ("auc", "auc", "AUC"),
                ("ks", "ks", "KS"),
                ("bad_rate", "bad_rate", "bad rate"),
                ("mature", "mature_labels", "number of labels"),
            )
        }
        for row in self.table.itertuples(index=False):
            for column, gauge in gauges.items():
                value = getattr(row, column)
                if value == value:  # NaN (too few labels) is left unset
                    gauge.labels(self.model, version, str(row.vintage)).set(float(value))
        ref = Gauge(
            "lendml_performance_reference_auc",
            "AUC of the model version at training (validation or test window)",
            ["model", "version"],
            registry=registry,
        )
        if self.reference_auc is not None:
            ref.labels(self.model, version).set(self.reference_auc)
        return registry


def measure_performance(
    log: pd.DataFrame,
    outcomes: Outcomes,
    *,
    model: str,
    as_of: Any,
    version: int | None = None,
    reference_auc: float | None = None,
    rules: MonitoringSettings | None = None,
    roles: Sequence[str] = _ROLES,
) -> PerformanceMonitor:
    """Performance by vintage of a flattened log joined to ``outcomes``, with the decay
    rule applied against ``reference_auc``.

    Examples
    --------
    >>> import pandas as pd
    >>> log = pd.DataFrame({
    ...     "time": pd.to_datetime(["2025-01-05", "2025-01-20"], utc=True),
    ...     "role": "champion", "probability": [0.1, 0.3], "entity.id": [1, 2],
    ... })
    >>> out = Outcomes(pd.DataFrame({"id": [1, 2], "label": [0, 1],
    ...     "observed_at": pd.to_datetime(["2025-04-01", "2025-03-01"], utc=True)}), key="id")
    >>> mon = measure_performance(log, out, model="pd", as_of="2025-05-01")
    >>> mon.table[["vintage", "mature", "bad_rate"]].to_dict("records")
    [{'vintage': '2025-01', 'mature': 2, 'bad_rate': 0.5}]
    """
    rules = rules or MonitoringSettings()
    cut = _utc(as_of)
    joined = _joined(log, outcomes, version=version, roles=roles)
    table = _by_vintage(joined, cut, min(30, rules.decay.min_labels))
    notes: list[str] = []
    if rules.decay.auc_margin is not None and reference_auc is None:
        notes.append(
            "decay rule not evaluated: the model version's AUC at training is unknown "
            "(give a model version, e.g. NAME@champion, trained with a "
            f"{rules.decay.reference} window)"
        )
    upper: dict[str, float] = {}
    if rules.decay.alpha is not None and reference_auc is not None and len(table):
        y = pd.to_numeric(joined["__label__"], errors="coerce")
        observed = pd.to_datetime(joined["__observed__"], utc=True)
        decided = pd.to_datetime(joined["time"], utc=True)
        mature = (y.notna() & observed.notna() & (observed <= cut) & (decided <= cut)).to_numpy()
        vintage = decided.dt.tz_localize(None).dt.to_period("M").astype(str).to_numpy()
        p = pd.to_numeric(joined["probability"], errors="coerce").to_numpy()
        for v in eligible_vintages(table, rules)["vintage"]:
            m = mature & (vintage == v)
            upper[v] = auc_upper_bound(y.to_numpy()[m].astype(int), p[m], rules.decay.alpha)
    alerts = decay_alerts(table, reference_auc=reference_auc, settings=rules, auc_upper=upper)
    return PerformanceMonitor(
        model=model,
        version=version,
        as_of=cut,
        table=table,
        reference_auc=reference_auc,
        alerts=alerts,
        rules=rules,
        notes=tuple(notes),
    )


def reference_auc_of(tracker: Any, run_id: str | None, which: str = "valid") -> float | None:
    """The AUC a version's training run measured on its ``valid`` or ``test`` window.

    ``None`` when the run is unknown or did not measure it (a cross-validated run has no
    validation window).
    """
    if tracker is None or not run_id:
        return None
    metrics = tracker.get_run(run_id).metrics
    names = ("valid_auc",) if which == "valid" else ("test_auc", "auc")
    for name in names:
        value = metrics.get(name)
        if value is not None and np.isfinite(value):
            return float(value)
    return None


def monitor_performance(
    registry: Any,
    log_settings: Any,
    root: Any,
    ref: str,
    outcomes: Outcomes,
    *,
    tracker: Any = None,
    as_of: Any = None,
    start: Any = None,
    end: Any = None,
    rules: MonitoringSettings | None = None,
) -> PerformanceMonitor:
    """Realised performance of the model version ``ref`` (``NAME@champion``, ``NAME/3``)
    from its prediction log and ``outcomes``, as of ``as_of`` (default: now).

    The decay rule compares each vintage with the AUC the version's training run measured
    (read from ``tracker``, the project's :class:`~lendml.registry.Tracker`).
    """
    from lendml.serving.prediction_log import read_prediction_log

    rules = rules or MonitoringSettings()
    info = registry.resolve(ref)
    log = read_prediction_log(log_settings, root, start=start, end=end, model=info.name)
    if log.empty:
        raise DataValidationError(
            f"The prediction log holds no decision of {info.name!r} between {start!r} and "
            f"{end!r}; serve the model or widen the window."
        )
    return measure_performance(
        log,
        outcomes,
        model=info.name,
        version=info.version,
        as_of=as_of if as_of is not None else pd.Timestamp.now(tz="UTC"),
        reference_auc=reference_auc_of(tracker, info.run_id, rules.decay.reference),
        rules=rules,
    )


__all__ = [
    "Outcomes",
    "PerformanceMonitor",
    "log_performance",
    "measure_performance",
    "monitor_performance",
    "reference_auc_of",
]
