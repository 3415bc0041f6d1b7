"""``evaluate``: every credit figure of one scored sample, and the :class:`Evaluation` result.

The evaluation is pure: labels, scores and frames in, figures out. It never loads a model
or reads a database, so training, the CLI and a notebook all call the same function on
the same inputs and get the same numbers. The result writes itself as JSON (every figure,
NaN as ``null``), as one self-contained HTML report and as a Markdown model card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pandas as pd

from lendml.errors import ConfigError
from lendml.evaluation._checks import (
    as_labels,
    as_scores,
    check_both_classes,
    check_fraction,
    check_frame,
    check_n_bins,
    dumps,
    jsonable,
    write_text_atomic,
)
from lendml.evaluation.calibration import Calibration, calibration_metrics
from lendml.evaluation.compare import AUCComparison, compare_auc
from lendml.evaluation.fairness import AIR_THRESHOLD, FairLendingResult, fair_lending
from lendml.evaluation.groups import check_period_freq, metrics_by_group, metrics_by_period
from lendml.evaluation.metrics import (
    Discrimination,
    discrimination,
    gains_table,
    score_distribution,
)
from lendml.evaluation.stability import (
    EPSILON,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    PSIResult,
    csi,
    fit_bins,
    fit_frame_bins,
    psi,
)

JSON_FORMAT = "lendml.evaluation/1"
#: Fewer bads than this in the evaluated sample: intervals are wide, said in limitations.
FEW_BADS = 100
#: Relative gap between mean P(bad) and the bad rate above which calibration-in-the-large
#: is called out.
CITL_GAP = 0.10


def _lendml_version() -> str:
    try:
        return version("lendml")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, eq=False)
class Evaluation:
    """All figures of one evaluation, ready to write as JSON, HTML or a model card.

    Build it with :func:`evaluate`. Tables are pandas DataFrames; every figure is also in
    :meth:`to_dict` (plain JSON types, NaN as ``None``).

    Attributes
    ----------
    info
        The caller's model facts (name, version, data windows, lineage, intended use).
    n, n_bad
        Rows evaluated and bads among them.
    discrimination
        AUC (DeLong CI), Gini, KS, log loss, Brier, PR-AUC and the ROC points.
    calibration
        Reliability curve, ECE and Hosmer–Lemeshow.
    gains
        Gains and lift by score band (band 1 = riskiest).
    score_distribution
        Score histograms by class.
    score_stability
        PSI of the score against the reference scores (None without them).
    feature_stability
        CSI per feature (empty without reference features).
    segments
        Metrics per group, one table per segment column.
    periods
        Metrics per period (None without a time column).
    fairness
        Fair-lending table (None without protected attributes).
    comparison
        Paired DeLong test against the champion (None without a champion score).
    limitations
        What a reader must know before relying on these figures.
    settings
        The arguments that shaped the figures (bins, alpha, margin, cutoff, ...).
    """

    info: dict[str, Any]
    n: int
    n_bad: int
    discrimination: Discrimination
    calibration: Calibration
    gains: pd.DataFrame
    score_distribution: pd.DataFrame
    score_stability: PSIResult | None = None
    feature_stability: dict[str, PSIResult] = field(default_factory=dict)
    segments: dict[str, pd.DataFrame] = field(default_factory=dict)
    periods: pd.DataFrame | None = None
    fairness: FairLendingResult | None = None
    comparison: AUCComparison | None = None
    limitations: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def bad_rate(self) -> float:
        """Share of bads among the rows evaluated."""
        return self.n_bad / self.n

    @property
    def stability_summary(self) -> pd.DataFrame:
        """One row per variable: ``variable``, ``kind``, ``psi``, ``level``, ``n_bins``.

        The score comes first (as ``score``), then the features by decreasing CSI.
        """
        rows = []
        if self.score_stability is not None:
            rows.append(_summary_row("score", "score", self.score_stability))
        features = [
            _summary_row(name, r.bins.kind, r) for name, r in self.feature_stability.items()
        ]
        features.sort(key=lambda r: (-r["psi"] if math.isfinite(r["psi"]) else 0.0, r["variable"]))
        rows.extend(features)
        return pd.DataFrame(rows, columns=["variable", "kind", "psi", "level", "n_bins"])

    def metrics(self) -> dict[str, float]:
        """The headline figures as a flat ``{name: float}`` (e.g. to log to a tracker)."""
        d, c = self.discrimination, self.calibration
        out = {
            "n": float(self.n),
            "bad_rate": self.bad_rate,
            "auc": d.auc.auc,
            "auc_se": d.auc.se,
            "auc_ci_low": d.auc.ci_low,
            "auc_ci_high": d.auc.ci_high,
            "gini": d.gini,
            "ks": d.ks,
            "log_loss": d.log_loss,
            "brier": d.brier,
            "pr_auc": d.pr_auc,
            "ece": c.ece,
            "hosmer_lemeshow": c.hosmer_lemeshow.statistic,
            "hosmer_lemeshow_p": c.hosmer_lemeshow.p_value,
        }
        if self.score_stability is not None:
            out["psi_score"] = self.score_stability.value
        if self.feature_stability:
            out["csi_max"] = max(r.value for r in self.feature_stability.values())
        if self.fairness is not None and self.fairness.cutoff is not None:
            air = self.fairness.table["air"].dropna()
            out["air_min"] = float(air.min()) if len(air) else float("nan")
            out["air_flags"] = float(self.fairness.table["air_flag"].sum())
        if self.comparison is not None:
            cmp = self.comparison
            out["auc_champion"] = cmp.auc_champion
            out["auc_diff_vs_champion"] = cmp.diff
            out["p_superiority"] = cmp.p_superiority
            out["p_noninferiority"] = cmp.p_noninferiority
        return {k: float(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """Every figure the HTML report shows, as plain JSON types (NaN as ``None``)."""
        stability: dict[str, Any] = {
            "score": self.score_stability.to_dict() if self.score_stability else None,
            "summary": self.stability_summary,
            "features": {k: v.to_dict() for k, v in self.feature_stability.items()},
        }
        return jsonable(
            {
                "format": JSON_FORMAT,
                "lendml_version": _lendml_version(),
                "info": self.info,
                "settings": self.settings,
                "data": {
                    "n": self.n,
                    "n_bad": self.n_bad,
                    "n_good": self.n - self.n_bad,
                    "bad_rate": self.bad_rate,
                },
                "metrics": self.metrics(),
                "discrimination": self.discrimination.to_dict(),
                "calibration": self.calibration.to_dict(),
                "gains": self.gains,
                "score_distribution": self.score_distribution,
                "stability": stability,
                "segments": self.segments,
                "periods": self.periods,
                "fairness": self.fairness.to_dict() if self.fairness else None,
                "comparison": self.comparison.to_dict() if self.comparison else None,
                "limitations": list(self.limitations),
            }
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON text (no ``NaN`` tokens)."""
        return dumps(self.to_dict())

    def write_json(self, path: str | Any) -> Any:
        """Write :meth:`to_json` atomically; returns the path."""
        return write_text_atomic(path, self.to_json() + "\n")

    def to_html(self) -> str:
        """One self-contained HTML page (inline CSS and SVG; opens offline)."""
        from lendml.evaluation.htmlreport import render_html

        return render_html(self)

    def write_html(self, path: str | Any) -> Any:
        """Write :meth:`to_html` atomically; returns the path."""
        return write_text_atomic(path, self.to_html())

    def model_card(self) -> str:
        """The model card in Markdown (the start of SR 11-7-style documentation)."""
        from lendml.evaluation.model_card import render_model_card

        return render_model_card(self)

    def write_model_card(self, path: str | Any) -> Any:
        """Write :meth:`model_card` atomically; returns the path."""
        return write_text_atomic(path, self.model_card())


def _summary_row(name: str, kind: str, r: PSIResult) -> dict[str, Any]:
    return {
        "variable": name,
        "kind": kind,
        "psi": r.value,
        "level": r.level,
        "n_bins": len(r.table),
    }


def _check_info(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise ConfigError(
            f"info must be a mapping of model facts (e.g. {{'model_name': 'pd_v3'}}); got "
            f"{type(info).__name__}."
        )
    bad = [k for k in info if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"info keys must be strings; got {bad[:5]!r}.")
    out = jsonable(dict(info))
    lim = out.get("limitations")
    if lim is not None and not isinstance(lim, list):
        out["limitations"] = [str(lim)]
    imm = out.get("immature_labels")
    if imm is not None and (isinstance(imm, bool) or not isinstance(imm, int) or imm < 0):
        raise ConfigError(
            f"info['immature_labels'] must be the number of rows left out because their "
            f"outcome was not yet observed (an integer >= 0); got {imm!r}."
        )
    return out


def _as_segment_frame(segments: Any, n: int) -> pd.DataFrame:
    if isinstance(segments, Mapping) and not isinstance(segments, pd.DataFrame):
        segments = pd.DataFrame(
            {str(k): pd.Series(v).reset_index(drop=True) for k, v in segments.items()}
        )
    return check_frame(segments, name="segments", n=n)


def evaluate(
    y_true: Any,
    score: Any,
    *,
    reference_score: Any = None,
    features: pd.DataFrame | None = None,
    reference_features: pd.DataFrame | None = None,
    categorical: list[str] | tuple[str, ...] = (),
    segments: pd.DataFrame | pd.Series | Mapping[str, Any] | None = None,
    periods: Any = None,
    period_freq: str = "M",
    protected: pd.DataFrame | pd.Series | None = None,
    cutoff: float | None = None,
    reference_groups: Mapping[str, Any] | None = None,
    champion_score: Any = None,
    margin: float = 0.01,
    alpha: float = 0.05,
    n_bins: int = 10,
    info: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate a P(bad) score on labelled rows: every figure a credit validator asks for.

    All inputs describe the same rows in the same order (except the reference sample).

    Parameters
    ----------
    y_true
        Observed outcome per row: 1 = bad (default), 0 = good. Rows whose outcome is not
        yet observed must be dropped first (count them in ``info['immature_labels']``).
    score
        The model's P(bad) per row, in [0, 1]; higher = riskier. NaN is refused.
    reference_score
        Scores of the reference sample (usually the training set): adds the score PSI,
        with bins frozen on the reference.
    features, reference_features
        Feature frames of the evaluated rows and of the reference sample, same columns:
        adds the CSI of every feature. Give both or neither.
    categorical
        Feature names to bin as categories even if numeric (e.g. codes).
    segments
        One or more columns of categories (a DataFrame, a Series or ``{name: values}``):
        adds n, bad rate, AUC and KS per group of each.
    periods
        A timestamp per row (e.g. the application date; naive means UTC): adds the same
        table per period.
    period_freq
        The period: ``M`` (month, default), ``Q``, ``W``, ``D``...
    protected
        Protected attributes per row (sex, age band, race...): adds the fair-lending
        table. These are never model inputs; they are used only here.
    cutoff
        Approve when ``score < cutoff``. Without it the fair-lending table holds score
        gaps only (no approval rates or AIR).
    reference_groups
        ``{attribute: group}`` overriding the fair-lending reference group.
    champion_score
        The current champion's P(bad) on the same rows: adds the paired DeLong test of
        ``AUC(this) − AUC(champion)``.
    margin
        Non-inferiority margin δ on the AUC (default 0.01).
    alpha
        Level of the tests; AUC intervals are ``1 − alpha``, the champion difference's
        ``1 − 2·alpha`` (its lower bound is the one-sided test).
    n_bins
        Bands of the gains table, bins of the reliability curve and of the PSI/CSI.
    info
        Model facts shown in the report and the model card: ``model_name``,
        ``model_version``, ``model_kind``, ``run_id``, ``feature_service``,
        ``feature_service_version``, ``training_set_fingerprint``, ``label_definition``,
        ``data_windows`` (e.g. ``{"train": "2022-01..2023-06", "test": "2023-07..12"}``),
        ``intended_use``, ``owner``, ``immature_labels`` (rows left out) and
        ``limitations`` (a list of sentences). Other keys are listed as they are.

    Returns
    -------
    Evaluation

    Raises
    ------
    ConfigError
        Labels not 0/1 or of one class, NaN or out-of-range scores, inputs of different
        lengths, features given without reference features, bad settings.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.01, 0.5, 2000)
    >>> y = (rng.uniform(size=2000) < p).astype(int)
    >>> ev = evaluate(y, p, info={"model_name": "pd_demo"})
    >>> 0.6 < ev.discrimination.auc.auc < 0.8
    True
    """
    y = as_labels(y_true)
    n = len(y)
    s = as_scores(score, name="score", n=n, probability=True)
    check_both_classes(y)
    alpha = check_fraction(alpha, name="alpha", low=0.0, high=0.5)
    n_bins = check_n_bins(n_bins)
    period_freq = check_period_freq(period_freq)
    if cutoff is not None:
        cutoff = check_fraction(cutoff, name="cutoff", low=0.0, high=1.0)
    facts = _check_info(info)

    disc = discrimination(y, s, alpha=alpha)
    cal = calibration_metrics(y, s, n_bins=n_bins)
    gains = gains_table(y, s, n_bins=n_bins)
    dist = score_distribution(y, s)

    score_psi = None
    if reference_score is not None:
        ref = as_scores(reference_score, name="reference_score")
        if len(ref) == 0:
            raise ConfigError("reference_score is empty: give the reference sample's scores.")
        score_psi = psi(fit_bins(ref, n_bins=n_bins, kind="numeric", name="score"), s)

    feature_psi: dict[str, PSIResult] = {}
    if (features is None) != (reference_features is None):
        raise ConfigError(
            "features and reference_features go together: the CSI compares each feature "
            "of the evaluated rows with the reference sample. Give both or neither."
        )
    if features is not None and reference_features is not None:
        cur = check_frame(features, name="features", n=n)
        if not isinstance(reference_features, pd.DataFrame):
            raise ConfigError(
                f"reference_features must be a pandas DataFrame; got "
                f"{type(reference_features).__name__}."
            )
        cur_cols, ref_cols = set(map(str, cur.columns)), set(map(str, reference_features.columns))
        if cur_cols != ref_cols:
            raise ConfigError(
                "features and reference_features must have the same columns; only in "
                f"features: {sorted(cur_cols - ref_cols)[:10]!r}, only in reference_features: "
                f"{sorted(ref_cols - cur_cols)[:10]!r}."
            )
        bins = fit_frame_bins(reference_features, n_bins=n_bins, categorical=categorical)
        feature_psi = csi(bins, cur)

    segment_tables: dict[str, pd.DataFrame] = {}
    if segments is not None:
        frame = _as_segment_frame(segments, n)
        for col in frame.columns:
            segment_tables[str(col)] = metrics_by_group(y, s, frame[col], name=str(col))

    period_table = None
    if periods is not None:
        period_table = metrics_by_period(y, s, periods, freq=period_freq)

    fair = None
    if protected is not None:
        fair = fair_lending(
            s, protected, cutoff=cutoff, y_true=y, reference_groups=reference_groups
        )

    comparison = None
    if champion_score is not None:
        comparison = compare_auc(y, champion_score, s, margin=margin, alpha=alpha)
    elif (
        isinstance(margin, bool) or not isinstance(margin, int | float) or not (0.0 <= margin < 0.5)
    ):
        raise ConfigError(f"margin must be an AUC difference in [0, 0.5); got {margin!r}.")

    settings = {
        "n_bins": n_bins,
        "alpha": alpha,
        "auc_ci_level": 1.0 - alpha,
        "margin": float(margin),
        "cutoff": cutoff,
        "decision_rule": "approve when score < cutoff" if cutoff is not None else None,
        "period_freq": period_freq if periods is not None else None,
        "psi_epsilon": EPSILON,
        "air_threshold": AIR_THRESHOLD,
    }
    ev = Evaluation(
        info=facts,
        n=n,
        n_bad=int(y.sum()),
        discrimination=disc,
        calibration=cal,
        gains=gains,
        score_distribution=dist,
        score_stability=score_psi,
        feature_stability=feature_psi,
        segments=segment_tables,
        periods=period_table,
        fairness=fair,
        comparison=comparison,
        settings=settings,
    )
    lim = _limitations(ev, protected_names=_names(protected), feature_names=_names(features))
    return replace(ev, limitations=tuple(lim))


def _names(frame: Any) -> list[str]:
    if isinstance(frame, pd.DataFrame):
        return [str(c) for c in frame.columns]
    if isinstance(frame, pd.Series) and frame.name is not None:
        return [str(frame.name)]
    return []


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _limitations(
    ev: Evaluation, *, protected_names: list[str], feature_names: list[str]
) -> list[str]:
    out: list[str] = []
    alpha = ev.settings["alpha"]
    imm = ev.info.get("immature_labels")
    if isinstance(imm, int) and imm > 0:
        out.append(
            f"{imm:,} rows were left out because their outcome was not yet observed "
            "(immature labels); the most recent periods may understate the bad rate."
        )
    if ev.n_bad < FEW_BADS:
        out.append(
            f"Only {ev.n_bad:,} bads were evaluated: every interval is wide and group figures "
            "are fragile."
        )
    hl = ev.calibration.hosmer_lemeshow
    if math.isfinite(hl.p_value) and hl.p_value < alpha:
        out.append(
            f"The Hosmer–Lemeshow test rejects calibration (p = {hl.p_value:.3g}); with "
            f"{ev.n:,} rows it flags even small gaps, so read it with the reliability curve "
            f"(ECE = {ev.calibration.ece:.4f})."
        )
    mean_s, rate = ev.calibration.mean_score, ev.calibration.bad_rate
    if rate > 0 and abs(mean_s - rate) / rate > CITL_GAP:
        word = "over" if mean_s > rate else "under"
        out.append(
            f"The mean predicted P(bad) ({mean_s:.4f}) {word}states the observed bad rate "
            f"({rate:.4f}) by more than {CITL_GAP:.0%}: recalibrate before using the score "
            "as a probability (pricing, provisions)."
        )
    if ev.score_stability is None:
        out.append("Score stability was not assessed: no reference scores were given.")
    elif ev.score_stability.value >= PSI_MODERATE:
        out.append(
            f"The score distribution shifted from the reference (PSI = "
            f"{ev.score_stability.value:.3f}, {ev.score_stability.level})."
        )
    shifted = [
        f"{k} ({r.value:.2f})"
        for k, r in ev.feature_stability.items()
        if r.value >= PSI_SIGNIFICANT
    ]
    if shifted:
        out.append(
            f"Features with a significant shift (CSI ≥ {PSI_SIGNIFICANT}): {_listing(shifted)}."
        )
    labelled = [
        (f"{col} = {group}", note)
        for col, table in ev.segments.items()
        for group, note in zip(table[col], table["note"], strict=True)
    ]
    if ev.periods is not None:
        labelled += [
            (f"period {p}", note)
            for p, note in zip(ev.periods["period"], ev.periods["note"], strict=True)
        ]
    undefined = [label for label, note in labelled if "undefined" in note]
    noisy = [label for label, note in labelled if "noisy" in note]
    if undefined:
        out.append(f"AUC is undefined (one class only) in: {_listing(undefined)}.")
    if noisy:
        out.append(f"AUC rests on fewer than 10 bads or goods in: {_listing(noisy)}.")
    if ev.fairness is None:
        out.append("Fair lending was not assessed: no protected attributes were given.")
    else:
        t = ev.fairness.table
        if ev.fairness.cutoff is None:
            out.append(
                "No cutoff was given: fair-lending approval rates and adverse impact ratios "
                "were not computed (score gaps only)."
            )
        flagged = [
            f"{r.attribute} = {r.group} (AIR {r.air:.2f})" for r in t.itertuples() if r.air_flag
        ]
        if flagged:
            out.append(
                f"Adverse impact ratio below {ev.fairness.air_threshold:g} (four-fifths rule) "
                f"for: {_listing(flagged)}. Review the business justification and less "
                "discriminatory alternatives."
            )
        small = [f"{r.attribute} = {r.group}" for r in t.itertuples() if "small group" in r.note]
        if small:
            out.append(f"Small protected groups (n < 30), rates noisy: {_listing(small)}.")
        leaked = sorted(set(protected_names) & set(feature_names))
        if leaked:
            out.append(
                f"Protected attribute(s) {leaked!r} also appear among the features: a "
                "protected attribute must never be a model input."
            )
    cmp = ev.comparison
    if cmp is not None and not cmp.noninferior:
        out.append(
            f"The model is not shown non-inferior to the champion (AUC difference "
            f"{cmp.diff:+.4f}, margin {cmp.margin:g}, p = {cmp.p_noninferiority:.3g})."
        )
    out.extend(str(x) for x in ev.info.get("limitations") or [])
    return out
