"""Alert rules (``monitoring:`` in lendml.yaml) applied to drift and performance figures.

The statistics come from :mod:`lendml.evaluation.drift` and
:mod:`lendml.evaluation.vintage`; this module only decides what alerts, so that
``lendml monitor drift``, ``performance`` and ``report`` alert alike. Every alert is one
row naming the ``rule``, the ``variable``, the ``window`` (a day, an ISO week or a
vintage), the ``value`` measured and the ``threshold`` it crossed, with a sentence in
``detail``:

=========  ====================================  =========================================
rule       value                                 fires when
=========  ====================================  =========================================
psi        PSI of the window                     value ≥ threshold = max(psi.threshold,
                                                 noise floor) (floor only if noise_floor)
ks         KS p-value                            value < ks_alpha
missing    missing rate now − at training        p < alpha and abs(value) ≥ missing_change
unseen     share of rows with an unseen level    value ≥ unseen_share
decay      realised AUC of a vintage             value < reference AUC − auc_margin (and
                                                 significant, with decay.alpha)
=========  ====================================  =========================================

Drift rules need ``drift.min_rows`` rows in the window; the decay rule needs
``decay.min_labels`` mature labels and ``decay.min_months_on_book``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lendml.core.config import DriftRuleSettings, MonitoringSettings, WatchSettings
from lendml.errors import ConfigError
from lendml.evaluation.drift import SCORE, DriftReference, DriftSettings

RULES = ("psi", "ks", "missing", "unseen", "decay")
ALERT_COLUMNS = ["rule", "variable", "window", "value", "threshold", "detail"]


def display_name(variable: str) -> str:
    """``score`` for the probability served, the input's name otherwise."""
    return "score" if variable == SCORE else str(variable)


def drift_settings(rules: DriftRuleSettings) -> DriftSettings:
    """The statistics' settings matching the rules (the noise floor uses ``alpha``)."""
    psi = rules.psi
    return DriftSettings(
        alpha=rules.alpha,
        psi_moderate=psi.threshold if psi else DriftSettings.psi_moderate,
        psi_significant=max(psi.significant, psi.threshold)
        if psi
        else DriftSettings.psi_significant,
        missing_change=rules.missing_change if rules.missing_change else 1.0,
        unseen_share=rules.unseen_share if rules.unseen_share else 1.0,
        min_rows=rules.min_rows,
    )


def watched_reference(reference: DriftReference, features: WatchSettings) -> DriftReference:
    """The reference restricted to the watched inputs (the score is always kept).

    Raises
    ------
    ConfigError
        ``monitoring.features.watch`` names an input the model does not have (a typo would
        silently watch nothing). Names in ``ignore`` that the model lacks are allowed: one
        ``lendml.yaml`` may serve several models.
    """
    names = list(reference.variables)
    unknown = [n for n in features.watch if n not in reference.variables]
    if unknown:
        raise ConfigError(
            f"monitoring.features.watch names {unknown[:5]!r}, which the model does not "
            f"read; its inputs: {names[:20]!r}. Fix the names in lendml.yaml."
        )
    keep = [n for n in (features.watch or names) if n not in set(features.ignore)]
    return DriftReference(
        variables={n: reference.variables[n] for n in keep}, score=reference.score
    )


def _level(psi: float, threshold: float, significant: float) -> str:
    if psi < threshold:
        return "stable"
    return "moderate" if psi < max(significant, threshold) else "significant"


def apply_drift_rules(table: pd.DataFrame, rules: DriftRuleSettings) -> pd.DataFrame:
    """``drift_by_window``'s table with its ``psi_level`` and ``alert_*`` columns set by
    ``rules`` (``alert_psi``, ``alert_ks``, ``alert_missing``, ``alert_unseen``, ``alert``)
    and ``psi_threshold``, the PSI the window had to reach."""
    if table.empty:
        return table
    t = table.copy()
    enough = t["n"].to_numpy() >= rules.min_rows
    psi = t["psi"].to_numpy(dtype=float)
    if rules.psi is not None:
        fixed = rules.psi.threshold
        floor = t["psi_noise_floor"].to_numpy(dtype=float)
        limit = np.maximum(fixed, floor) if rules.psi.noise_floor else np.full(len(t), fixed)
        significant = rules.psi.significant
        t["psi_threshold"] = limit
        t["psi_level"] = [
            _level(p, lim, max(significant, lim) if rules.psi.noise_floor else significant)
            for p, lim in zip(psi, limit, strict=True)
        ]
        t["alert_psi"] = enough & (psi >= limit)
    else:
        t["psi_threshold"] = math.nan
        t["alert_psi"] = False
    ks_p = t["ks_pvalue"].to_numpy(dtype=float)
    t["alert_ks"] = (
        enough & np.nan_to_num(ks_p < rules.ks_alpha, nan=False)
        if rules.ks_alpha is not None
        else False
    )
    if rules.missing_change is not None:
        now = t["missing_current"].to_numpy(dtype=float)
        change = np.abs(now - t["missing_reference"].to_numpy(dtype=float))
        miss_p = t["missing_pvalue"].to_numpy(dtype=float)
        # the float tolerance keeps a change of exactly missing_change on the alerting side
        t["alert_missing"] = (
            enough
            & (np.nan_to_num(miss_p, nan=1.0) < rules.alpha)
            & (change >= rules.missing_change - 1e-12)
        )
    else:
        t["alert_missing"] = False
    if rules.unseen_share is not None:
        share = np.nan_to_num(t["unseen_share"].to_numpy(dtype=float), nan=0.0)
        t["alert_unseen"] = (
            enough & (t["kind"] == "categorical").to_numpy() & (share >= rules.unseen_share)
        )
    else:
        t["alert_unseen"] = False
    t["alert"] = t["alert_psi"] | t["alert_ks"] | t["alert_missing"] | t["alert_unseen"]
    return t


def drift_alerts(table: pd.DataFrame, rules: DriftRuleSettings) -> pd.DataFrame:
    """One row per rule that fired on a (window, variable) of a table from
    :func:`apply_drift_rules`, with ``ALERT_COLUMNS``."""
    out: list[dict[str, Any]] = []
    if table.empty:
        return pd.DataFrame(columns=ALERT_COLUMNS)
    for r in table.itertuples(index=False):
        name = display_name(r.variable)
        base = {"variable": name, "window": r.window}
        if r.alert_psi:
            out.append(
                {
                    **base,
                    "rule": "psi",
                    "value": float(r.psi),
                    "threshold": float(r.psi_threshold),
                    "detail": f"PSI {r.psi:.3f} ≥ {r.psi_threshold:.3f} "
                    f"(rule {rules.psi.threshold:g}, noise floor {r.psi_noise_floor:.3f}, "  # type: ignore[union-attr]
                    f"{r.n:,} rows)",
                }
            )
        if r.alert_ks:
            out.append(
                {
                    **base,
                    "rule": "ks",
                    "value": float(r.ks_pvalue),
                    "threshold": float(rules.ks_alpha),  # type: ignore[arg-type]
                    "detail": f"KS {r.ks:.3f}, p = {r.ks_pvalue:.2g} < {rules.ks_alpha:g}",
                }
            )
        if r.alert_missing:
            change = float(r.missing_current - r.missing_reference)
            out.append(
                {
                    **base,
                    "rule": "missing",
                    "value": change,
                    "threshold": float(rules.missing_change),  # type: ignore[arg-type]
                    "detail": f"missing {r.missing_reference:.1%} at training → "
                    f"{r.missing_current:.1%} (p = {r.missing_pvalue:.2g})",
                }
            )
        if r.alert_unseen:
            out.append(
                {
                    **base,
                    "rule": "unseen",
                    "value": float(r.unseen_share),
                    "threshold": float(rules.unseen_share),  # type: ignore[arg-type]
                    "detail": f"{r.unseen_share:.1%} of rows with a level unseen in training"
                    + (f" ({r.unseen_levels})" if r.unseen_levels else ""),
                }
            )
    return pd.DataFrame(out, columns=ALERT_COLUMNS)


def decay_alerts(
    table: pd.DataFrame,
    *,
    reference_auc: float | None,
    settings: MonitoringSettings,
    auc_upper: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The decay rule over ``performance_by_vintage``'s table.

    ``auc_upper`` maps a vintage to the upper end of its realised AUC's one-sided
    ``1 - decay.alpha`` bound (needed when ``decay.alpha`` is set).
    """
    rule = settings.decay
    out: list[dict[str, Any]] = []
    if rule.auc_margin is None or reference_auc is None or table.empty:
        return pd.DataFrame(out, columns=ALERT_COLUMNS)
    threshold = float(reference_auc) - rule.auc_margin
    for r in eligible_vintages(table, settings).itertuples(index=False):
        if not r.auc < threshold:
            continue
        upper = (auc_upper or {}).get(r.vintage, math.nan)
        if rule.alpha is not None and not upper < reference_auc:
            continue  # below the line but within noise of the reference
        bound = f", upper {1 - rule.alpha:.0%} bound {upper:.3f}" if rule.alpha else ""
        out.append(
            {
                "rule": "decay",
                "variable": "auc",
                "window": r.vintage,
                "value": float(r.auc),
                "threshold": threshold,
                "detail": f"realised AUC {r.auc:.3f} on {r.mature:,} mature labels{bound} < "
                f"{reference_auc:.3f} ({rule.reference}) − {rule.auc_margin:g}",
            }
        )
    return pd.DataFrame(out, columns=ALERT_COLUMNS)


def eligible_vintages(table: pd.DataFrame, settings: MonitoringSettings) -> pd.DataFrame:
    """The vintages the decay rule judges: enough mature labels, old enough, AUC known."""
    rule = settings.decay
    keep = (
        (table["mature"] >= rule.min_labels)
        & (table["months_on_book"] >= rule.min_months_on_book)
        & table["auc"].notna()
    )
    return table[keep]


def auc_upper_bound(y: np.ndarray, p: np.ndarray, alpha: float) -> float:
    """The upper end of the one-sided ``1 - alpha`` DeLong bound of the AUC."""
    from lendml.evaluation import auc_delong

    result = auc_delong(y, p, alpha=2 * alpha)  # two-sided 1 - 2α: its upper end is one-sided
    return float(result.ci_high)


def firing(alerts: pd.DataFrame, latest: Iterable[Any], rules: Sequence[str] = RULES) -> dict:
    """Alerts per rule in the given windows (0 for a rule that does not fire)."""
    wanted = set(latest)
    now = alerts[alerts["window"].isin(wanted)] if len(alerts) else alerts
    counts = now["rule"].value_counts().to_dict() if len(now) else {}
    return {rule: int(counts.get(rule, 0)) for rule in rules}


__all__ = [
    "ALERT_COLUMNS",
    "RULES",
    "apply_drift_rules",
    "auc_upper_bound",
    "decay_alerts",
    "display_name",
    "drift_alerts",
    "drift_settings",
    "eligible_vintages",
    "firing",
    "watched_reference",
]
