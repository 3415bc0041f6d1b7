"""The monitoring dashboard's time series as inline SVG (drawn like the evaluation report's).

Each figure is a matplotlib figure on its own Agg canvas from
:mod:`lendml.evaluation.plots`, so nothing here touches matplotlib's global state, and the
SVG is cleaned the same way (no external reference; ids salted per figure).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lendml.core.config import MonitoringSettings
from lendml.evaluation.drift import SCORE

# one figure style for every report: the evaluation report's private helpers
from lendml.evaluation.plots import BAD, GOOD, INK, figure, new_figure, to_svg

THRESHOLD = "#f39c12"
MAX_LINES = 8


def _x(windows: pd.Series) -> pd.Series:
    return pd.to_datetime(windows, utc=True).dt.tz_localize(None)


def _mark_alerts(ax: Any, x: pd.Series, y: pd.Series, fired: pd.Series, label: str) -> None:
    if fired.any():
        ax.scatter(
            x[fired], y[fired], s=70, facecolors="none", edgecolors="black", zorder=3, label=label
        )


def _dates(ax: Any, table: pd.DataFrame) -> None:
    """One tick per window (at most ~10), labelled by its first day."""
    windows = pd.Series(sorted(_x(table["window"]).unique()))
    step = max(1, len(windows) // 10)
    shown = windows.iloc[::step]
    ax.set_xticks(shown, [w.strftime("%Y-%m-%d") for w in shown], rotation=30, ha="right")


def score_psi_svg(table: pd.DataFrame, rules: MonitoringSettings) -> str:
    """PSI of the score served per window, with the threshold each window had to reach."""
    fig, ax = figure(8.4, 3.4)
    t = table[table["variable"] == SCORE].sort_values("window")
    x = _x(t["window"])
    ax.plot(x, t["psi"], marker="o", color=BAD, label="score PSI (served vs training)")
    if rules.drift.psi is not None:
        ax.step(
            x,
            t["psi_threshold"],
            where="mid",
            color=THRESHOLD,
            linestyle="--",
            label="alert threshold (rule and noise floor)"
            if rules.drift.psi.noise_floor
            else "alert threshold",
        )
        _mark_alerts(ax, x, t["psi"], t["alert_psi"].astype(bool), "PSI alert")
    ax.set_ylabel("PSI")
    ax.set_ylim(bottom=0)
    ax.set_title("Score drift per window")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    _dates(ax, t)
    return to_svg(fig, salt="score-psi")


def feature_psi_svg(table: pd.DataFrame, rules: MonitoringSettings) -> str:
    """PSI (CSI) of the inputs per window, the most drifted ``MAX_LINES`` of them."""
    fig, ax = figure(8.4, 3.8)
    t = table[table["variable"] != SCORE]
    top = t.groupby("variable")["psi"].max().sort_values(ascending=False).index[:MAX_LINES]
    for name in top:
        part = t[t["variable"] == name].sort_values("window")
        x = _x(part["window"])
        ax.plot(x, part["psi"], marker=".", linewidth=1.2, label=str(name))
        fired = part["alert_psi"].astype(bool)
        if fired.any():
            ax.scatter(x[fired], part["psi"][fired], s=60, facecolors="none", edgecolors="black")
    if rules.drift.psi is not None:
        ax.axhline(
            rules.drift.psi.threshold,
            color=THRESHOLD,
            linestyle="--",
            linewidth=1,
            label=f"rule {rules.drift.psi.threshold:g} (circles: alert)",
        )
    ax.set_ylabel("PSI")
    ax.set_ylim(bottom=0)
    title = "Input drift per window"
    if t["variable"].nunique() > MAX_LINES:
        title += f" (the {MAX_LINES} most drifted of {t['variable'].nunique()})"
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    _dates(ax, t)
    return to_svg(fig, salt="feature-psi")


def missing_svg(table: pd.DataFrame, rules: MonitoringSettings) -> str | None:
    """Change of each input's missing rate from training, per window (``None``: no input
    is ever missing)."""
    t = table[table["variable"] != SCORE].assign(
        change=lambda d: d["missing_current"] - d["missing_reference"]
    )
    moved = t.groupby("variable")["change"].apply(lambda c: float(np.abs(c).max()))
    ever = t.groupby("variable")["missing_reference"].max()
    names = moved[(moved > 0) | (ever > 0)].sort_values(ascending=False).index[:MAX_LINES]
    if not len(names):
        return None
    fig, ax = figure(8.4, 3.4)
    for name in names:
        part = t[t["variable"] == name].sort_values("window")
        x = _x(part["window"])
        ax.plot(x, part["change"], marker=".", linewidth=1.2, label=str(name))
        fired = part["alert_missing"].astype(bool)
        if fired.any():
            ax.scatter(x[fired], part["change"][fired], s=60, facecolors="none", edgecolors="black")
    limit = rules.drift.missing_change
    if limit is not None:
        for sign in (1, -1):
            ax.axhline(sign * limit, color=THRESHOLD, linestyle="--", linewidth=1)
    ax.axhline(0, color=INK, linewidth=0.8)
    ax.set_ylabel("missing rate now − at training")
    ax.set_title("Missing-rate changes per window (dashed: rule; circles: alert)")
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    _dates(ax, t)
    return to_svg(fig, salt="missing")


def vintage_svg(
    perf: pd.DataFrame, *, reference_auc: float | None, rules: MonitoringSettings
) -> str:
    """Realised AUC and KS by vintage (with the decay line), and bad rate vs predicted."""
    fig = new_figure(8.4, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(perf))
    labels = perf["vintage"].astype(str)
    ax1.plot(x, perf["auc"], marker="o", color=BAD, label="AUC")
    ax1.plot(x, perf["ks"], marker="s", color=GOOD, label="KS")
    if reference_auc is not None:
        ax1.axhline(
            reference_auc, color=INK, linewidth=1, label=f"AUC at training {reference_auc:.3f}"
        )
        if rules.decay.auc_margin is not None:
            line = reference_auc - rules.decay.auc_margin
            ax1.axhline(
                line, color=THRESHOLD, linestyle="--", linewidth=1, label=f"decay line {line:.3f}"
            )
    ax1.set_ylim(0, 1)
    ax1.set_title("Realised AUC and KS (mature labels)")
    ax1.legend(fontsize=8, frameon=False, loc="lower left")
    ax2.bar(x, perf["bad_rate"].fillna(0.0), color=BAD, alpha=0.35, label="observed bad rate")
    ax2.plot(x, perf["mean_predicted"], marker="o", color=INK, label="mean predicted P(bad)")
    ax2.set_title("Bad rate by vintage")
    ax2.legend(fontsize=8, frameon=False, loc="upper left")
    step = max(1, len(perf) // 10)
    for ax in (ax1, ax2):
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_xticks(x[::step], labels.iloc[::step], rotation=30, ha="right")
    return to_svg(fig, salt="vintage")


__all__ = ["feature_psi_svg", "missing_svg", "score_psi_svg", "vintage_svg"]
