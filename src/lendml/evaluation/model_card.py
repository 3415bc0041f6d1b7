"""The model card: a Markdown summary of an evaluation for model documentation and review.

Its sections follow what a model risk reviewer (SR 11-7 style) reads first: intended use,
data windows, lineage, performance with intervals, calibration, stability, fair lending,
the champion comparison and the limitations. It is the start of the documentation, not
all of it: the conceptual soundness and the business context are the owner's to write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lendml.evaluation.htmlreport import KNOWN_INFO, fmt, plain

if TYPE_CHECKING:
    import pandas as pd

    from lendml.evaluation.report import Evaluation

SECTIONS = (
    "Intended use",
    "Data windows",
    "Lineage",
    "Performance",
    "Calibration",
    "Stability",
    "Fair lending",
    "Champion comparison",
    "Limitations",
)


def _md_table(frame: pd.DataFrame, columns: list[str] | None = None) -> list[str]:
    cols = columns or [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame[cols].itertuples(index=False, name=None):
        cells = [fmt(v, c).replace("|", "\\|") for c, v in zip(cols, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _kv(rows: list[tuple[str, Any]]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {fmt(v) if not isinstance(v, str) else v} |" for k, v in rows]
    return lines


def render_model_card(ev: Evaluation) -> str:
    """The Markdown text of the card."""
    info = ev.info
    name = info.get("model_name") or "Model"
    ver = info.get("model_version")
    out = [f"# Model card: {name}{f' {ver}' if ver is not None else ''}", ""]
    kind = info.get("model_kind") or "not stated"
    label = info.get("label_definition")
    out += [
        f"Kind: {kind}. Scores are P(bad) (higher = riskier); label 1 = bad"
        + (f": {label}." if label else "."),
        "",
    ]

    out += ["## Intended use", "", str(info.get("intended_use") or "Not stated by the owner."), ""]
    if info.get("owner"):
        out += [f"Owner: {info['owner']}.", ""]

    out += ["## Data windows", ""]
    windows = info.get("data_windows")
    if isinstance(windows, dict) and windows:
        out += _kv([(str(k), plain(v)) for k, v in windows.items()])
    else:
        out.append(plain(windows) if windows else "Not stated.")
    out += ["", f"Evaluated rows: {ev.n:,}, of which {ev.n_bad:,} bad ({ev.bad_rate:.2%}).", ""]
    if info.get("immature_labels"):
        out += [f"Rows left out with immature labels: {info['immature_labels']:,}.", ""]

    out += ["## Lineage", ""]
    lineage = [
        (label, str(info[key]))
        for key, label in (
            ("run_id", "Run"),
            ("feature_service", "Feature service"),
            ("feature_service_version", "Feature service version"),
            ("training_set_fingerprint", "Training-set fingerprint"),
        )
        if info.get(key) is not None
    ]
    lineage += [(str(k), plain(v)) for k, v in info.items() if k not in KNOWN_INFO]
    out += _kv(lineage) if lineage else ["Not stated."]
    out.append("")

    d = ev.discrimination
    lvl = f"{d.auc.ci_level:.0%}"
    out += ["## Performance", ""]
    out += _kv(
        [
            (
                f"AUC [{lvl} CI, DeLong]",
                f"{d.auc.auc:.4f} [{d.auc.ci_low:.4f}, {d.auc.ci_high:.4f}]",
            ),
            (f"Gini [{lvl} CI]", f"{d.gini:.4f} [{d.gini_ci_low:.4f}, {d.gini_ci_high:.4f}]"),
            ("KS", f"{d.ks:.4f} at score ≥ {fmt(d.ks_score)}"),
            ("Log loss", d.log_loss),
            ("Brier score", d.brier),
            ("PR-AUC (random score: bad rate)", f"{d.pr_auc:.4f} ({d.bad_rate:.4f})"),
        ]
    )
    out += ["", "Gains by score band (1 = riskiest):", ""]
    out += _md_table(ev.gains, ["band", "n", "bad_rate", "cum_bads_captured", "lift"])
    for col, table in ev.segments.items():
        out += ["", f"By {col}:", ""]
        out += _md_table(table)
    if ev.periods is not None:
        out += ["", f"By period ({ev.settings.get('period_freq')}):", ""]
        out += _md_table(ev.periods)
    out.append("")

    c, hl = ev.calibration, ev.calibration.hosmer_lemeshow
    out += ["## Calibration", ""]
    out += _kv(
        [
            ("Mean predicted P(bad)", c.mean_score),
            ("Observed bad rate", c.bad_rate),
            ("Expected calibration error", c.ece),
            (f"Hosmer–Lemeshow (df {hl.df})", f"{hl.statistic:.3f}, p = {hl.p_value:.3g}"),
        ]
    )
    out.append("")

    out += ["## Stability", ""]
    summary = ev.stability_summary
    if len(summary):
        out += ["PSI against the reference sample (bins frozen on the reference):", ""]
        out += _md_table(summary)
    else:
        out.append("Not assessed: no reference sample was given.")
    out.append("")

    out += ["## Fair lending", ""]
    f = ev.fairness
    if f is None:
        out.append("Not assessed: no protected attributes were given.")
    else:
        out += [
            f"Decision rule: {f.decision_rule}"
            + (f"; cutoff {f.cutoff:g}." if f.cutoff is not None else "; no cutoff given."),
            f"AIR flag: adverse impact ratio below {f.air_threshold:g} (four-fifths rule). "
            f"Flagged groups: {int(f.table['air_flag'].sum())}.",
            "",
        ]
        t = f.table.assign(AIR_FLAG=f.table["air_flag"].map({True: "FLAG", False: ""}))
        out += _md_table(
            t,
            [
                "attribute",
                "group",
                "n",
                "approval_rate",
                "air",
                "AIR_FLAG",
                "fisher_p",
                "smd",
                "auc",
                "note",
            ],
        )
    out.append("")

    out += ["## Champion comparison", ""]
    cmp = ev.comparison
    if cmp is None:
        out.append("No champion score was given.")
    else:
        out += _kv(
            [
                ("Champion AUC", cmp.auc_champion),
                ("This model's AUC", cmp.auc_challenger),
                ("Difference", f"{cmp.diff:+.4f} (SE {cmp.se:.4f})"),
                (f"{cmp.ci_level:.0%} CI", f"[{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}]"),
                ("p superiority (H0: diff ≤ 0)", f"{cmp.p_superiority:.3g}"),
                (f"p non-inferiority (H0: diff ≤ −{cmp.margin:g})", f"{cmp.p_noninferiority:.3g}"),
                (f"Verdict at α = {cmp.alpha:g}", cmp.verdict),
            ]
        )
    out.append("")

    out += ["## Limitations", ""]
    out += [f"- {item}" for item in ev.limitations] or ["None recorded."]
    out.append("")
    return "\n".join(out)
