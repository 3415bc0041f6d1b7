"""The monitoring dashboard: drift and realised performance of a served model, one page.

:func:`monitoring_report` measures a model version's served decisions (drift per day or
ISO week against its training data; with outcomes, realised performance by vintage),
applies the alert rules of ``monitoring:`` in lendml.yaml, and returns a
:class:`MonitoringReport`. :meth:`MonitoringReport.write` writes

* ``monitoring.html``: one self-contained page (inline CSS and SVG, no script, nothing
  fetched) in the evaluation report's style — score PSI and per-feature PSI over the
  windows with the alert threshold drawn, missing-rate changes, realised AUC, KS and bad
  rate by vintage, and the table of alerts;
* ``monitoring.json``: every figure on the page;
* ``metrics.prom``: the Prometheus gauges in the text format (for node_exporter's
  textfile collector, or to check what a scrape would see).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from lendml.core.config import MonitoringSettings
from lendml.evaluation.drift import SCORE
from lendml.evaluation.htmlreport import CSS, table
from lendml.monitoring import figures
from lendml.monitoring.drift import DriftMonitor, monitor_drift
from lendml.monitoring.performance import Outcomes, PerformanceMonitor, monitor_performance
from lendml.monitoring.rules import ALERT_COLUMNS, RULES, display_name, firing


def _window_text(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)


@dataclass(frozen=True)
class MonitoringReport:
    """Drift (and, with outcomes, performance) of one model version, with its alerts."""

    drift: DriftMonitor
    performance: PerformanceMonitor | None
    rules: MonitoringSettings
    created_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))

    @property
    def model(self) -> str:
        return self.drift.model

    @property
    def version(self) -> int:
        return self.drift.version

    @property
    def alerts(self) -> pd.DataFrame:
        """Every alert of every rule, newest window first (``rule``, ``variable``,
        ``window``, ``value``, ``threshold``, ``detail``; windows as text)."""
        parts = [self.drift.alerts.assign(window=self.drift.alerts["window"].map(_window_text))]
        if self.performance is not None:
            parts.append(self.performance.alerts)
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=ALERT_COLUMNS)
        out = pd.concat(parts, ignore_index=True)[ALERT_COLUMNS]
        return out.sort_values(["window", "rule", "variable"], ascending=[False, True, True])

    @property
    def firing(self) -> dict[str, int]:
        """Alerts per rule firing now: in the latest drift window, and (decay) in the
        newest vintage the rule judges."""
        counts = firing(self.drift.alerts, [self.drift.table["window"].max()], RULES)
        if self.performance is not None:
            decay = firing(self.performance.alerts, [self.performance.latest_vintage], ["decay"])
            counts["decay"] = decay["decay"]
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Every figure of the report as plain JSON."""
        alerts = self.alerts
        return {
            "model": self.model,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "rules": self.rules.model_dump(mode="json"),
            "firing": self.firing,
            "alerts": alerts.astype(object).where(alerts.notna(), None).to_dict("records"),
            "drift": self.drift.to_dict(),
            "performance": self.performance.to_dict() if self.performance else None,
        }

    def gauges(self, registry: CollectorRegistry | None = None) -> CollectorRegistry:
        """Prometheus gauges: drift of the latest window (``lendml_drift_*``), performance
        by vintage (``lendml_performance_*``) and ``lendml_monitoring_alerts_firing`` per
        rule."""
        registry = self.drift.gauges(registry)
        if self.performance is not None:
            self.performance.gauges(registry)
        gauge = Gauge(
            "lendml_monitoring_alerts_firing",
            "Alerts of a rule firing now (latest window; decay: newest judged vintage)",
            ["model", "version", "rule"],
            registry=registry,
        )
        for rule, count in self.firing.items():
            gauge.labels(self.model, str(self.version), rule).set(count)
        return registry

    def to_html(self) -> str:
        """The dashboard page."""
        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        return env.from_string(TEMPLATE).render(css=CSS, **_context(self))

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write ``monitoring.html``, ``monitoring.json`` and ``metrics.prom`` into
        ``folder`` (created if needed; each file written atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "html": (folder / "monitoring.html", self.to_html()),
            "json": (folder / "monitoring.json", json.dumps(self.to_dict(), indent=2, default=str)),
            "metrics": (folder / "metrics.prom", generate_latest(self.gauges()).decode()),
        }
        for path, text in files.values():
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        return {k: path for k, (path, _) in files.items()}


def monitoring_report(
    registry: Any,
    log_settings: Any,
    root: Any,
    ref: str,
    *,
    outcomes: Outcomes | None = None,
    tracker: Any = None,
    as_of: Any = None,
    start: Any = None,
    end: Any = None,
    every: Literal["D", "W"] | None = None,
    rules: MonitoringSettings | None = None,
) -> MonitoringReport:
    """Drift and (with ``outcomes``) realised performance of the model version ``ref``.

    ``registry``, ``tracker``, ``log_settings`` and ``root`` are the project's (see
    :func:`~lendml.monitoring.drift.monitor_drift`); ``rules`` its ``monitoring:``
    settings; ``every`` overrides ``rules.every``; ``as_of`` (default: now) is when
    outcomes are counted.
    """
    rules = rules or MonitoringSettings()
    drift = monitor_drift(
        registry, log_settings, root, ref, start=start, end=end, every=every, rules=rules
    )
    perf = None
    if outcomes is not None:
        perf = monitor_performance(
            registry,
            log_settings,
            root,
            f"{drift.model}/{drift.version}",
            outcomes,
            tracker=tracker,
            as_of=as_of,
            start=start,
            end=end,
            rules=rules,
        )
    return MonitoringReport(drift=drift, performance=perf, rules=rules)


def _rules_rows(rules: MonitoringSettings) -> pd.DataFrame:
    d = rules.drift
    rows = [
        ("window", "day" if rules.every == "D" else "ISO week"),
        ("inputs watched", ", ".join(rules.features.watch) or "all"),
        ("inputs ignored", ", ".join(rules.features.ignore) or "none"),
        ("rows a window needs to alert", d.min_rows),
        ("α (noise floor, missing-rate test)", d.alpha),
        (
            "psi",
            "off"
            if d.psi is None
            else f"PSI ≥ {d.psi.threshold:g}"
            + (" and above the noise floor" if d.psi.noise_floor else ""),
        ),
        ("ks", "off" if d.ks_alpha is None else f"p < {d.ks_alpha:g}"),
        (
            "missing",
            "off" if d.missing_change is None else f"change ≥ {d.missing_change:g} and p < α",
        ),
        ("unseen", "off" if d.unseen_share is None else f"share ≥ {d.unseen_share:g}"),
    ]
    k = rules.decay
    rows.append(
        (
            "decay",
            "off"
            if k.auc_margin is None
            else f"AUC < {k.reference} AUC − {k.auc_margin:g} on vintages with ≥ "
            f"{k.min_labels} mature labels and ≥ {k.min_months_on_book} months on book"
            + (f", significant at {k.alpha:g}" if k.alpha is not None else ""),
        )
    )
    return pd.DataFrame(rows, columns=["rule", "setting"]).astype({"setting": str})


def _context(report: MonitoringReport) -> dict[str, Any]:
    drift = report.drift
    t = drift.table
    latest = drift.latest
    alerts = report.alerts
    firing_now = report.firing
    windows = sorted(t["window"].unique())
    headline = [
        ("Model version", f"{report.model}/{report.version}"),
        ("Windows", f"{len(windows)} ({'daily' if drift.every == 'D' else 'weekly'})"),
        ("Latest window", _window_text(windows[-1]) if windows else "—"),
        ("Decisions in the latest window", f"{int(latest['n'].max()):,}" if len(latest) else "0"),
        ("Alerts firing now", str(sum(firing_now.values()))),
        ("Alerts over all windows", str(len(alerts))),
    ]
    view = latest.assign(
        variable=latest["variable"].map(display_name),
        window=latest["window"].map(_window_text),
    )[
        [
            "variable",
            "n",
            "psi",
            "psi_threshold",
            "psi_noise_floor",
            "js",
            "ks",
            "ks_pvalue",
            "missing_reference",
            "missing_current",
            "unseen_share",
            "alert",
        ]
    ]
    ctx: dict[str, Any] = {
        "title": f"{report.model}/{report.version}",
        "created_at": report.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "headline": headline,
        "firing": [(rule, n) for rule, n in firing_now.items()],
        "alerts": table(alerts, caption="Newest window first") if len(alerts) else None,
        "score_svg": figures.score_psi_svg(t, report.rules)
        if SCORE in set(t["variable"])
        else None,
        "feature_svg": figures.feature_psi_svg(t, report.rules),
        "missing_svg": figures.missing_svg(t, report.rules),
        "latest": table(view, flag="alert"),
        "rules": table(_rules_rows(report.rules)),
        "performance": None,
    }
    perf = report.performance
    if perf is not None:
        ctx["performance"] = {
            "svg": figures.vintage_svg(
                perf.table, reference_auc=perf.reference_auc, rules=report.rules
            )
            if len(perf.table)
            else None,
            "table": table(perf.table),
            "as_of": perf.as_of.strftime("%Y-%m-%d"),
            "reference": perf.reference_auc,
            "notes": list(perf.notes),
        }
    return ctx


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Monitoring — {{ title }}</title>
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
<h1>Monitoring — {{ title }}</h1>
<p class="muted">Served decisions (champion and canary; shadow scores left out) against the
model's training data; made {{ created_at }}. Scores are P(bad).</p>
<nav>
<a href="#summary">Summary</a><a href="#alerts">Alerts</a><a href="#drift">Drift</a>
<a href="#missing">Missing rates</a><a href="#performance">Performance</a>
<a href="#latest">Latest window</a><a href="#rules">Rules</a>
</nav>
</header>

<section id="summary">
<h2>Summary</h2>
<div class="cards">
{% for k, v in headline %}<div class="card"><div class="k">{{ k }}</div>
<div class="v">{{ v }}</div></div>
{% endfor %}</div>
<p>Firing now, per rule:
{% for rule, n in firing %}<strong>{{ rule }}</strong> {{ n }}{% if not loop.last %} · {% endif %}
{% endfor %}</p>
</section>

<section id="alerts">
<h2>Alerts</h2>
{% if alerts %}{{ render(alerts) }}{% else %}<p>No rule fired in any window.</p>{% endif %}
</section>

<section id="drift">
<h2>Drift</h2>
<p class="note">PSI against the training bins, per window. A window alerts when its PSI
reaches the threshold drawn: the rule, raised to the PSI that unchanged data exceed with
probability α at the window's size (the noise floor), so that small windows do not alert
on noise. Circles mark alerts.</p>
{% if score_svg %}{{ score_svg|safe }}{% endif %}
{{ feature_svg|safe }}
</section>

<section id="missing">
<h2>Missing rates</h2>
{% if missing_svg %}{{ missing_svg|safe }}{% else %}
<p class="muted">No watched input was ever missing, at training or since.</p>{% endif %}
</section>

<section id="performance">
<h2>Realised performance by vintage</h2>
{% if performance %}
<p class="note">Decisions grouped by the month they were made, measured on the outcomes
observed by {{ performance.as_of }} only; approved loans only (declines have no outcome).
{% if performance.reference is not none -%}
AUC at training: {{ "%.4f"|format(performance.reference) }}.{% endif %}</p>
{% for n in performance.notes %}<p class="muted">{{ n }}</p>{% endfor %}
{% if performance.svg %}{{ performance.svg|safe }}{% endif %}
<div class="scroll">{{ render(performance.table) }}</div>
{% else %}
<p class="muted">No outcomes were given (--outcomes): only drift is measured.</p>
{% endif %}
</section>

<section id="latest">
<h2>Latest window</h2>
<div class="scroll">{{ render(latest) }}</div>
</section>

<section id="rules">
<h2>Rules</h2>
<p class="note">From <code>monitoring:</code> in lendml.yaml.</p>
{{ render(rules) }}
</section>
<footer><p class="muted">Every figure on this page is in monitoring.json beside it;
recompute with <code>lendml monitor report</code>.</p></footer>
</body>
</html>
"""


__all__ = ["MonitoringReport", "monitoring_report"]
