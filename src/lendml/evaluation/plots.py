"""The report's figures as inline SVG, drawn with matplotlib without touching its global state.

Figures are built on :class:`matplotlib.figure.Figure` directly, each on its own Agg
canvas (no ``pyplot``, no ``matplotlib.use``): nothing here changes the backend other code
uses, and no window or GUI toolkit is ever involved. The SVG is written by matplotlib's
SVG printer for that one call; ``svg.fonttype`` and ``svg.hashsalt`` are set inside
``matplotlib.rc_context``, which restores the global settings on exit.

The SVG keeps text as text (small, searchable, crisp in print) and drops the XML prolog,
DOCTYPE, metadata and namespace URIs, so the report holds no ``http(s)://`` reference at
all; element ids are salted per figure so that several figures can share one page.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lendml.evaluation.calibration import Calibration
    from lendml.evaluation.compare import AUCComparison
    from lendml.evaluation.metrics import Discrimination

BAD = "#c0392b"
GOOD = "#2e86c1"
INK = "#333333"
GRID = "#dddddd"
LEVEL_COLOURS = {"stable": "#27ae60", "moderate": "#f39c12", "significant": "#c0392b"}

_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_XMLNS = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure(width: float = 6.4, height: float = 3.8) -> tuple[Figure, Axes]:
    """One axes in the reports' style (light grid, no top/right spines) on its own canvas."""
    fig = new_figure(width, height)
    ax = fig.subplots()
    ax.grid(True, color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def to_svg(fig: Figure, *, salt: str) -> str:
    """The figure as an ``<svg>`` element ready to inline in HTML."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"lendml-{salt}"}):
        fig.savefig(
            buf,
            format="svg",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    svg = _PROLOG.sub("", buf.getvalue(), count=1)
    svg = _METADATA.sub("", svg)
    svg = _XMLNS.sub("", svg)
    # Unique ids per figure: matplotlib numbers them figure_1, axes_1, ... in each file.
    svg = re.sub(
        r'id="((?:figure|axes|patch|line2d|text|legend|matplotlib)[^"]*)"', rf'id="{salt}-\1"', svg
    )
    return svg.replace("<svg ", f'<svg role="img" aria-label="{salt}" class="figure" ', 1)


def _thin_curve(x: np.ndarray, y: np.ndarray, points: int = 1500) -> tuple[Any, Any]:
    """At most ~``points`` vertices of a monotone curve for drawing: the last vertex at or
    before each of ``points`` evenly spaced x values, and both ends. A figure a few hundred
    pixels wide shows no difference; a 1M-row ROC has ~10^5 vertices that cost seconds."""
    if len(x) <= points:
        return x, y
    grid = np.linspace(x[0], x[-1], points)
    keep = np.unique(np.concatenate([[0, len(x) - 1], np.searchsorted(x, grid, side="right") - 1]))
    return x[keep], y[keep]


def roc_svg(disc: Discrimination, comparison: AUCComparison | None = None) -> str:
    """ROC curve with the diagonal of a random score; the KS point marked."""
    fig, ax = figure(5.2, 4.4)
    roc = disc.roc
    fpr, tpr = _thin_curve(np.asarray(roc["fpr"], float), np.asarray(roc["tpr"], float))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="random")
    ax.plot(fpr, tpr, color=BAD, linewidth=2, label=f"model (AUC {disc.auc.auc:.3f})")
    if comparison is not None:
        ax.plot([], [], " ", label=f"champion AUC {comparison.auc_champion:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (share of goods declined)")
    ax.set_ylabel("true positive rate (share of bads declined)")
    ax.set_title(f"ROC — Gini {disc.gini:.3f}, KS {disc.ks:.3f}")
    ax.legend(loc="lower right", frameon=False)
    return to_svg(fig, salt="roc")


def reliability_svg(cal: Calibration) -> str:
    """Observed bad rate against mean predicted P(bad) per quantile bin."""
    fig, ax = figure(5.2, 4.4)
    t = cal.reliability
    hi = float(max(t["mean_score"].max(), t["bad_rate"].max(), 1e-6)) * 1.05
    ax.plot([0, hi], [0, hi], color="#999999", linestyle="--", linewidth=1, label="perfect")
    ax.plot(t["mean_score"], t["bad_rate"], color=BAD, marker="o", linewidth=1.5, label="model")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("mean predicted P(bad)")
    ax.set_ylabel("observed bad rate")
    ax.set_title(f"Reliability — ECE {cal.ece:.4f}")
    ax.legend(loc="upper left", frameon=False)
    return to_svg(fig, salt="reliability")


def gains_svg(gains: pd.DataFrame) -> str:
    """Cumulative share of bads captured by band, with the lift of each band."""
    fig = new_figure(8.4, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    for ax in (ax1, ax2):
        ax.grid(True, color=GRID, linewidth=0.6)
        ax.set_axisbelow(True)
    x = np.concatenate([[0.0], gains["cum_share"].to_numpy()])
    ycap = np.concatenate([[0.0], gains["cum_bads_captured"].to_numpy()])
    ax1.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="random")
    ax1.plot(x, ycap, color=BAD, marker="o", linewidth=2, label="model")
    ax1.set_xlabel("share of applicants declined (riskiest first)")
    ax1.set_ylabel("share of bads captured")
    ax1.set_title("Cumulative gains")
    ax1.legend(loc="lower right", frameon=False)
    ax2.bar(gains["band"].astype(str), gains["lift"], color=BAD)
    ax2.axhline(1.0, color=INK, linewidth=1)
    ax2.set_xlabel("score band (1 = riskiest)")
    ax2.set_ylabel("lift (band bad rate / overall)")
    ax2.set_title("Lift by band")
    return to_svg(fig, salt="gains")


def distribution_svg(dist: pd.DataFrame) -> str:
    """Score histograms of goods and bads (each as a share of its class)."""
    fig, ax = figure()
    edges = np.concatenate([dist["bin_low"].to_numpy(), dist["bin_high"].to_numpy()[-1:]])
    ax.stairs(dist["share_good"], edges, color=GOOD, fill=True, alpha=0.35, label="goods")
    ax.stairs(dist["share_bad"], edges, color=BAD, fill=True, alpha=0.35, label="bads")
    ax.stairs(dist["share_good"], edges, color=GOOD, linewidth=1.5)
    ax.stairs(dist["share_bad"], edges, color=BAD, linewidth=1.5)
    ax.set_xlabel("score (P(bad))")
    ax.set_ylabel("share of the class")
    ax.set_title("Score distribution by class")
    ax.legend(frameon=False)
    return to_svg(fig, salt="distribution")


def psi_svg(summary: pd.DataFrame, *, max_rows: int = 30) -> str:
    """PSI / CSI bars per variable, coloured by level, with the 0.10 and 0.25 lines."""
    top = summary.head(max_rows).iloc[::-1]
    fig, ax = figure(6.4, max(2.2, 0.28 * len(top) + 1.2))
    colours = [LEVEL_COLOURS.get(level, "#999999") for level in top["level"]]
    ax.barh(top["variable"].astype(str), top["psi"].fillna(0.0), color=colours)
    ax.axvline(0.10, color="#f39c12", linestyle="--", linewidth=1)
    ax.axvline(0.25, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_xlabel("PSI (reference → current)")
    title = "Stability per variable"
    if len(summary) > max_rows:
        title += f" (top {max_rows} of {len(summary)})"
    ax.set_title(title)
    return to_svg(fig, salt="psi")


def fairness_svg(table: pd.DataFrame, *, air_threshold: float) -> str:
    """Approval rate per protected group, with each attribute's four-fifths line."""
    t = table[table["n"] > 0].reset_index(drop=True)
    fig, ax = figure(6.4, max(2.2, 0.3 * len(t) + 1.2))
    labels = [f"{a} = {g}" for a, g in zip(t["attribute"], t["group"], strict=True)]
    colours = [BAD if flag else GOOD for flag in t["air_flag"]]
    y = np.arange(len(t))[::-1]
    ax.barh(y, t["approval_rate"].fillna(0.0), color=colours)
    ax.set_yticks(y, labels)
    for _, part in t.groupby("attribute", sort=False):
        ref = part[part["is_reference"]]
        if len(ref) and np.isfinite(ref["approval_rate"].iloc[0]):
            line = air_threshold * float(ref["approval_rate"].iloc[0])
            rows = y[part.index.to_numpy()]
            ax.vlines(
                line, rows.min() - 0.4, rows.max() + 0.4, color=INK, linestyle="--", linewidth=1
            )
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"approval rate (dashed: {air_threshold:g} × the reference group's)")
    ax.set_title("Approval rate by protected group (red: AIR flag)")
    return to_svg(fig, salt="fairness")


def periods_svg(periods: pd.DataFrame) -> str:
    """AUC and bad rate per period."""
    t = periods[periods["period"] != "(missing)"]
    fig, ax = figure(8.4, 3.4)
    x = np.arange(len(t))
    ax.plot(x, t["auc"], color=BAD, marker="o", label="AUC")
    ax.set_ylabel("AUC")
    finite = t["auc"].dropna()
    ax.set_ylim(min(0.5, float(finite.min())) if len(finite) else 0.5, 1.0)
    ax2 = ax.twinx()
    ax2.bar(x, t["bad_rate"].fillna(0.0), color=GOOD, alpha=0.3, label="bad rate")
    ax2.set_ylabel("bad rate")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    step = max(1, len(t) // 12)
    ax.set_xticks(x[::step], t["period"].iloc[::step], rotation=45, ha="right")
    ax.set_title("AUC (line) and bad rate (bars) by period")
    return to_svg(fig, salt="periods")
