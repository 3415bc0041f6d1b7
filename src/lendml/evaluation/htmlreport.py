"""The evaluation report: one self-contained HTML file that opens offline and prints well.

Everything is inline: the CSS, the figures (SVG drawn by :mod:`lendml.evaluation.plots`)
and the tables. There is no script, no stylesheet link, no font or image fetched from
anywhere. The template is a Python string (no package data to install) rendered by
Jinja2 with autoescaping on, so a model name or a group label can never inject markup.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd

from lendml.evaluation import plots

if TYPE_CHECKING:
    from lendml.evaluation.report import Evaluation

_PERCENT = (
    "bad_rate",
    "share",
    "share_good",
    "share_bad",
    "cum_share",
    "cum_bad_rate",
    "cum_bads_captured",
    "approval_rate",
    "ref_share",
    "cur_share",
)
_PVALUE = ("fisher_p", "p_value", "p_superiority", "p_noninferiority")

_LABELS = {
    "model_name": "Model",
    "model_version": "Version",
    "model_kind": "Kind",
    "run_id": "Run",
    "feature_service": "Feature service",
    "feature_service_version": "Feature service version",
    "training_set_fingerprint": "Training-set fingerprint",
    "label_definition": "Label (bad) definition",
    "intended_use": "Intended use",
    "owner": "Owner",
    "immature_labels": "Rows left out (immature labels)",
}

#: Facts shown under their own heading; any other ``info`` key is listed as it is.
KNOWN_INFO = frozenset(_LABELS) | {"data_windows", "limitations"}


def fmt(value: Any, column: str = "") -> str:
    """One cell: ints with separators, rates as %, p-values in 3 significant digits."""
    if value is None or value is pd.NA:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "—"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if column in _PERCENT:
            return f"{v:.2%}"
        if column in _PVALUE:
            return f"{v:.3g}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4f}" if abs(v) >= 0.001 or v == 0 else f"{v:.3g}"
    return str(value)


def table(frame: pd.DataFrame, *, flag: str | None = None, caption: str = "") -> dict[str, Any]:
    """A DataFrame as headers and formatted cells; rows where ``flag`` is true are marked."""
    flags = (
        [bool(v) for v in frame[flag]]
        if flag is not None and flag in frame
        else [False] * len(frame)
    )
    return {
        "caption": caption,
        "headers": [str(c) for c in frame.columns],
        "rows": [
            [fmt(v, str(c)) for c, v in zip(frame.columns, row, strict=True)]
            for row in frame.itertuples(index=False, name=None)
        ],
        "flags": flags,
    }


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return table(pd.DataFrame(items, columns=["figure", "value"]).astype({"value": object}))


def plain(value: Any) -> str:
    """A fact as one line: mappings as ``k: v; ...``, lists comma-separated."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    return fmt(value)


def _facts(info: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, label in _LABELS.items():
        if info.get(key) is not None:
            out.append((label, fmt(info[key])))
    windows = info.get("data_windows")
    if isinstance(windows, dict):
        out.extend((f"Data window: {k}", plain(v)) for k, v in windows.items())
    elif windows is not None:
        out.append(("Data windows", plain(windows)))
    for key, value in info.items():
        if key not in KNOWN_INFO:
            out.append((key, plain(value)))
    return out


def context(ev: Evaluation) -> dict[str, Any]:
    """Everything the template shows: headline figures, tables and figures."""
    d, c, hl = ev.discrimination, ev.calibration, ev.calibration.hosmer_lemeshow
    level = f"{d.auc.ci_level:.0%}"
    headline = [
        ("Rows evaluated", ev.n),
        ("Bads", ev.n_bad),
        ("Bad rate", fmt(ev.bad_rate, "bad_rate")),
        (f"AUC [{level} CI]", f"{d.auc.auc:.4f} [{d.auc.ci_low:.4f}, {d.auc.ci_high:.4f}]"),
        (f"Gini [{level} CI]", f"{d.gini:.4f} [{d.gini_ci_low:.4f}, {d.gini_ci_high:.4f}]"),
        ("KS (at score)", f"{d.ks:.4f} (≥ {fmt(d.ks_score)})"),
    ]
    disc_rows = [
        ("AUC", d.auc.auc),
        ("AUC standard error (DeLong)", d.auc.se),
        (f"AUC {level} CI low", d.auc.ci_low),
        (f"AUC {level} CI high", d.auc.ci_high),
        ("Gini (2·AUC − 1)", d.gini),
        (f"Gini {level} CI", f"[{fmt(d.gini_ci_low)}, {fmt(d.gini_ci_high)}]"),
        ("KS (max TPR − FPR)", d.ks),
        ("KS at score ≥", d.ks_score),
        ("Log loss", d.log_loss),
        ("Brier score", d.brier),
        ("PR-AUC (average precision)", d.pr_auc),
        ("PR-AUC of a random score (bad rate)", d.bad_rate),
    ]
    cal_rows = [
        ("Mean predicted P(bad)", c.mean_score),
        ("Observed bad rate", c.bad_rate),
        ("Expected calibration error", c.ece),
        ("Hosmer–Lemeshow statistic", hl.statistic),
        ("Hosmer–Lemeshow degrees of freedom", hl.df),
        ("Hosmer–Lemeshow p-value", fmt(hl.p_value, "p_value")),
    ]
    ctx: dict[str, Any] = {
        "title": _title(ev.info),
        "facts": _facts(ev.info),
        "headline": [(k, fmt(v) if not isinstance(v, str) else v) for k, v in headline],
        "limitations": list(ev.limitations),
        "settings": ev.settings,
        "disc_table": _pairs(disc_rows),
        "roc_svg": plots.roc_svg(d, ev.comparison),
        "roc_table": table(d.roc, caption="ROC points at evenly spaced false positive rates"),
        "cal_table": _pairs(cal_rows),
        "reliability_svg": plots.reliability_svg(c),
        "reliability_table": table(c.reliability),
        "hl_table": table(hl.table),
        "gains_svg": plots.gains_svg(ev.gains),
        "gains_table": table(ev.gains),
        "dist_svg": plots.distribution_svg(ev.score_distribution),
        "dist_table": table(ev.score_distribution),
        "stability": None,
        "segments": [(k, table(v)) for k, v in ev.segments.items()],
        "periods": None,
        "fairness": None,
        "comparison": None,
        "n_bins": ev.settings.get("n_bins"),
    }
    summary = ev.stability_summary
    if len(summary):
        ctx["stability"] = {
            "svg": plots.psi_svg(summary),
            "summary": table(summary, flag=None),
            "score": table(ev.score_stability.table) if ev.score_stability else None,
            "features": [
                (k, r.level, r.value, table(r.table)) for k, r in ev.feature_stability.items()
            ],
            "epsilon": ev.settings.get("psi_epsilon"),
        }
    if ev.periods is not None:
        ctx["periods"] = {
            "svg": plots.periods_svg(ev.periods),
            "table": table(ev.periods),
            "freq": ev.settings.get("period_freq"),
        }
    if ev.fairness is not None:
        f = ev.fairness
        ctx["fairness"] = {
            "svg": plots.fairness_svg(f.table, air_threshold=f.air_threshold)
            if f.cutoff is not None
            else None,
            "table": table(f.table, flag="air_flag"),
            "rule": f.decision_rule,
            "cutoff": f.cutoff,
            "threshold": f.air_threshold,
            "n_flagged": int(f.table["air_flag"].sum()),
            "references": f.references,
        }
    if ev.comparison is not None:
        cmp = ev.comparison
        ctx["comparison"] = {
            "verdict": cmp.verdict,
            "table": _pairs(
                [
                    ("Champion AUC", cmp.auc_champion),
                    ("Challenger (this model) AUC", cmp.auc_challenger),
                    ("Difference (challenger − champion)", cmp.diff),
                    ("Standard error of the difference (paired DeLong)", cmp.se),
                    (
                        f"{cmp.ci_level:.0%} CI of the difference",
                        f"[{fmt(cmp.ci_low)}, {fmt(cmp.ci_high)}]",
                    ),
                    ("Correlation of the two AUCs", cmp.correlation),
                    ("p-value, H0: difference = 0 (two-sided)", fmt(cmp.p_value, "p_value")),
                    (
                        "p-value, superiority (H0: difference ≤ 0)",
                        fmt(cmp.p_superiority, "p_value"),
                    ),
                    (
                        f"p-value, non-inferiority (H0: difference ≤ −{cmp.margin:g})",
                        fmt(cmp.p_noninferiority, "p_value"),
                    ),
                    (f"Superior at α = {cmp.alpha:g}", "yes" if cmp.superior else "no"),
                    (f"Non-inferior at α = {cmp.alpha:g}", "yes" if cmp.noninferior else "no"),
                ]
            ),
        }
    return ctx


def _title(info: dict[str, Any]) -> str:
    name = info.get("model_name") or "Model"
    ver = info.get("model_version")
    return f"{name} {ver}" if ver is not None else str(name)


CSS = """
:root { --ink: #222; --muted: #666; --rule: #ccc; --flag: #fdecea; --accent: #c0392b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); max-width: 1080px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; border-bottom: 2px solid var(--ink); padding-bottom: 3px; margin-top: 36px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
p.note, .muted { color: var(--muted); }
nav { margin: 12px 0 0; font-size: 13px; }
nav a { margin-right: 12px; color: var(--ink); }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 12.5px;
        font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding: 2px 0; font-size: 12px; }
th, td { border-bottom: 1px solid var(--rule); padding: 3px 8px; text-align: right;
         vertical-align: top; }
th { background: #f4f4f4; border-bottom: 1px solid #999; }
td:first-child, th:first-child { text-align: left; }
tr.flag td { background: var(--flag); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.card .k { color: var(--muted); font-size: 12px; }
.card .v { font-size: 16px; font-weight: 600; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
svg.figure { max-width: 100%; height: auto; }
.verdict { font-weight: 600; }
ul.limits li { margin-bottom: 4px; }
.scroll { max-height: 420px; overflow: auto; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  h2 { break-after: avoid; }
  table, svg.figure, .card { break-inside: avoid; }
  .scroll { max-height: none; overflow: visible; }
  tr.flag td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation — {{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
{% macro render(t) -%}
<table>
{% if t.caption %}<caption>{{ t.caption }}</caption>{% endif %}
<thead><tr>{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr{% if t.flags[loop.index0] %} class="flag"{% endif %}>
{%- for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{%- endmacro %}
<header>
<h1>Model evaluation — {{ title }}</h1>
<p class="muted">Scores are P(bad): higher is riskier; label 1 = bad.
{% if settings.cutoff is not none %}Decision rule: {{ settings.decision_rule }}
({{ settings.cutoff }}).{% endif %}</p>
<nav>
<a href="#summary">Summary</a><a href="#discrimination">Discrimination</a>
<a href="#calibration">Calibration</a><a href="#gains">Gains</a>
<a href="#distribution">Distributions</a><a href="#stability">Stability</a>
<a href="#segments">Segments</a><a href="#fairness">Fair lending</a>
<a href="#champion">Champion</a><a href="#limitations">Limitations</a>
</nav>
</header>

<section id="summary">
<h2>Summary</h2>
<div class="cards">
{% for k, v in headline %}<div class="card"><div class="k">{{ k }}</div>
<div class="v">{{ v }}</div></div>
{% endfor %}</div>
{% if facts %}
<h3>Model facts</h3>
<table><tbody>
{% for k, v in facts %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
</section>

<section id="discrimination">
<h2>Discrimination</h2>
<p class="note">How well the score ranks bads above goods. AUC intervals use DeLong's
variance; Gini = 2·AUC − 1; KS is the largest gap between the shares of bads and of goods
declined at one threshold.</p>
<div class="row">
<div>{{ roc_svg|safe }}</div>
<div>{{ render(disc_table) }}</div>
</div>
<h3>ROC points</h3>
<div class="scroll">{{ render(roc_table) }}</div>
</section>

<section id="calibration">
<h2>Calibration</h2>
<p class="note">Does a predicted P(bad) of 5 % mean 5 bads in 100? Bins are quantiles of the
score ({{ n_bins }} wanted; tied scores share a bin).</p>
<div class="row">
<div>{{ reliability_svg|safe }}</div>
<div>{{ render(cal_table) }}</div>
</div>
<h3>Reliability table</h3>
{{ render(reliability_table) }}
<h3>Hosmer–Lemeshow groups</h3>
{{ render(hl_table) }}
</section>

<section id="gains">
<h2>Gains and lift</h2>
<p class="note">Band 1 holds the riskiest scores. Cumulative capture: the share of all bads
declined when declining bands 1..b; lift: a band's bad rate over the overall bad rate.</p>
{{ gains_svg|safe }}
{{ render(gains_table) }}
</section>

<section id="distribution">
<h2>Score distributions</h2>
{{ dist_svg|safe }}
<div class="scroll">{{ render(dist_table) }}</div>
</section>

<section id="stability">
<h2>Stability (PSI / CSI)</h2>
{% if stability %}
<p class="note">Population stability index against the reference sample, with bins frozen on
the reference; shares are floored at {{ stability.epsilon }} for empty bins. Below 0.10
stable, 0.10–0.25 moderate, 0.25 and above significant.</p>
{{ stability.svg|safe }}
{{ render(stability.summary) }}
{% if stability.score %}<h3>Score PSI by bin</h3>{{ render(stability.score) }}{% endif %}
{% for name, level, value, t in stability.features %}
<h3>CSI of {{ name }}: {{ "%.4f"|format(value) }} ({{ level }})</h3>
{{ render(t) }}
{% endfor %}
{% else %}
<p class="muted">Not assessed: no reference sample was given.</p>
{% endif %}
</section>

<section id="segments">
<h2>Segments and periods</h2>
{% for name, t in segments %}
<h3>By {{ name }}</h3>
{{ render(t) }}
{% endfor %}
{% if periods %}
<h3>By period ({{ periods.freq }})</h3>
{{ periods.svg|safe }}
<div class="scroll">{{ render(periods.table) }}</div>
{% endif %}
{% if not segments and not periods %}
<p class="muted">No segments or periods were given.</p>
{% endif %}
</section>

<section id="fairness">
<h2>Fair lending</h2>
{% if fairness %}
<p class="note">Decision rule: {{ fairness.rule }}{% if fairness.cutoff is not none %}, cutoff
{{ fairness.cutoff }}{% endif %}. Adverse impact ratio (AIR) = a group's approval rate over the
reference group's; flagged (shaded) below {{ fairness.threshold }} (four-fifths rule).
Fisher's exact test compares each group's approved/declined counts with the reference's.
SMD is the standardized mean difference of scores (positive: scored riskier). Reference
groups: {% for a, g in fairness.references.items() %}{{ a }} = {{ g }}
{%- if not loop.last %}; {% endif %}{% endfor %}.
<strong>{{ fairness.n_flagged }}</strong> group(s) flagged.</p>
{% if fairness.svg %}{{ fairness.svg|safe }}{% endif %}
{{ render(fairness.table) }}
{% else %}
<p class="muted">Not assessed: no protected attributes were given.</p>
{% endif %}
</section>

<section id="champion">
<h2>Champion comparison</h2>
{% if comparison %}
<p>Verdict: <span class="verdict">{{ comparison.verdict }}</span> (paired DeLong test on the
same rows).</p>
{{ render(comparison.table) }}
{% else %}
<p class="muted">No champion score was given.</p>
{% endif %}
</section>

<section id="limitations">
<h2>Limitations</h2>
{% if limitations %}<ul class="limits">
{% for item in limitations %}<li>{{ item }}</li>
{% endfor %}</ul>{% else %}<p>None recorded.</p>{% endif %}
</section>
<footer><p class="muted">Figures recomputed by <code>lendml.evaluation.evaluate</code>; every
figure on this page is also in the JSON written by <code>Evaluation.write_json</code>.</p></footer>
</body>
</html>
"""


def render_html(ev: Evaluation) -> str:
    """The report page for an evaluation."""
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False
    )
    return env.from_string(TEMPLATE).render(css=CSS, **context(ev))
