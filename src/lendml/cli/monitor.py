"""``lendml monitor``: drift and realised performance of what a model served.

Thin: reads the project's registry, prediction-log settings and alert rules
(``monitoring:`` in lendml.yaml) and calls :mod:`lendml.monitoring`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project

if TYPE_CHECKING:
    import pandas as pd

    from lendml.monitoring.performance import Outcomes

monitor_app = typer.Typer(
    help="Monitoring: drift and realised performance of served decisions.", no_args_is_help=True
)


def _every(every: str | None) -> str | None:
    from lendml.errors import ConfigError

    if every is not None and every not in ("D", "W"):
        raise ConfigError(f"--every must be D (day) or W (ISO week); got {every!r}.")
    return every


def _write_json(out: Path, data: object) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(out)


def _print_alerts(alerts: pd.DataFrame, title: str) -> None:
    view = Table(title=title)
    for col in ("rule", "variable", "window", "value", "threshold", "detail"):
        view.add_column(col, justify="right" if col in ("value", "threshold") else "left")
    for row in alerts.itertuples(index=False):
        window = row.window.strftime("%Y-%m-%d") if hasattr(row.window, "strftime") else row.window
        view.add_row(
            row.rule,
            row.variable,
            str(window),
            f"{row.value:.4g}",
            f"{row.threshold:.4g}",
            row.detail,
        )
    console.print(view)


@monitor_app.command("drift")
@handle_errors
def drift_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION.")] = "",
    start: Annotated[str | None, typer.Option(help="First time (UTC, ISO-8601).")] = None,
    end: Annotated[str | None, typer.Option(help="End time, excluded (UTC).")] = None,
    every: Annotated[
        str | None,
        typer.Option(help="Window: D (day) or W (ISO week); default monitoring.every."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write every figure as JSON here.")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Drift per window of a model version's served decisions against its training data.

    Alerts follow the rules of ``monitoring:`` in lendml.yaml. Exit code 0 when nothing
    alerts in the latest window, 1 when something does (for cron).
    """
    from lendml.errors import ConfigError
    from lendml.monitoring.drift import monitor_drift

    if not model:
        raise ConfigError("--model is required: NAME@champion or NAME/VERSION.")
    with open_project(project) as p:
        mon = monitor_drift(
            p.registry,
            p.config.prediction_log,
            p.root,
            model,
            start=start,
            end=end,
            every=_every(every),  # type: ignore[arg-type]
            rules=p.config.monitoring,
        )
    if out is not None:
        _write_json(out, mon.to_dict())
    latest = mon.latest
    window = latest["window"].iloc[0]
    table = Table(title=f"{mon.model}/{mon.version}: drift in the window from {window}")
    for col in ("variable", "n", "PSI", "noise floor", "JS", "KS p", "missing now", "alert"):
        table.add_column(col, justify="left" if col == "variable" else "right")
    for row in latest.itertuples(index=False):
        table.add_row(
            "score" if row.variable == "__score__" else str(row.variable),
            str(row.n),
            f"{row.psi:.3f}",
            f"{row.psi_noise_floor:.3f}",
            f"{row.js:.3f}",
            "-" if row.ks_pvalue != row.ks_pvalue else f"{row.ks_pvalue:.2g}",
            f"{row.missing_current:.1%}",
            "[red]ALERT[/]" if row.alert else "ok",
        )
    console.print(table)
    fired = mon.latest_alerts
    if len(fired):
        _print_alerts(fired, "alerts in the latest window")
    console.print(
        f"{mon.table['window'].nunique()} window(s) read; {len(fired)} alert(s) in the latest."
        + (f" JSON: {out}" if out else "")
    )
    if len(fired):
        raise typer.Exit(1)


_OUTCOME_HELP = "Outcomes table (.parquet, .csv or .csv.gz), one row per entity key."


def _outcomes(path: Path | None, key: str, label: str, observed_at: str) -> Outcomes | None:
    from lendml.errors import ConfigError
    from lendml.monitoring.performance import Outcomes

    if path is None:
        return None
    if not key:
        raise ConfigError("--key is required with --outcomes: the entity key column as logged.")
    return Outcomes.read(path, key=key, label=label, observed_at=observed_at)


@monitor_app.command("performance")
@handle_errors
def performance_cmd(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="NAME@ALIAS or NAME/VERSION (decay rule applied), or NAME (every version).",
        ),
    ] = "",
    outcomes: Annotated[Path | None, typer.Option("--outcomes", help=_OUTCOME_HELP)] = None,
    key: Annotated[str, typer.Option(help="Entity key column (as logged).")] = "",
    label: Annotated[str, typer.Option(help="Outcome column, 1 = bad.")] = "label",
    observed_at: Annotated[
        str, typer.Option("--observed-at", help="When each outcome became known.")
    ] = "observed_at",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Measure at this time (default: now).")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Only this version's decisions.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write every figure and alert as JSON here.")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Realised performance of a model's served decisions by vintage, mature labels only.

    With a model version (NAME@champion, NAME/3 or --version) each vintage is checked by
    the decay rule of ``monitoring:`` in lendml.yaml; exit code 1 when the newest vintage it
    judges decays (for cron).
    """
    import pandas as pd

    from lendml.errors import ConfigError
    from lendml.monitoring.performance import measure_performance, monitor_performance
    from lendml.serving.prediction_log import read_prediction_log

    if not model or outcomes is None or not key:
        raise ConfigError("--model, --outcomes and --key are required.")
    table = _outcomes(outcomes, key, label, observed_at)
    when = pd.Timestamp(as_of) if as_of else pd.Timestamp.now(tz="UTC")
    ref = (
        f"{model}/{version}" if version is not None and not any(c in model for c in "@/") else model
    )
    with open_project(project) as p:
        rules = p.config.monitoring
        if any(c in ref for c in "@/"):
            perf = monitor_performance(
                p.registry,
                p.config.prediction_log,
                p.root,
                ref,
                table,
                tracker=p.tracker,
                as_of=when,
                rules=rules,
            )
        else:  # every version's decisions: no single AUC at training to decay from
            log = read_prediction_log(p.config.prediction_log, p.root, model=model)
            if log.empty:
                raise ConfigError(f"The prediction log holds no decision of model {model!r}.")
            perf = measure_performance(
                log,
                table,
                model=model,
                as_of=when,
                rules=rules.model_copy(
                    update={"decay": rules.decay.model_copy(update={"auc_margin": None})}
                ),
            )
    if out is not None:
        _write_json(out, perf.to_dict())
    title = f"{perf.model}" + (f"/{perf.version}" if perf.version is not None else "")
    view = Table(title=f"{title}: realised performance by vintage as of {perf.as_of:%Y-%m-%d}")
    for col in perf.table.columns:
        view.add_column(col, justify="left" if col == "vintage" else "right")
    for row in perf.table.itertuples(index=False):
        view.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)
    if perf.reference_auc is not None:
        console.print(f"AUC at training ({rules.decay.reference}): {perf.reference_auc:.4f}")
    for note in perf.notes:
        console.print(f"[yellow]note:[/] {note}")
    if len(perf.alerts):
        _print_alerts(perf.alerts, "decay alerts")
    if len(perf.latest_alerts):
        raise typer.Exit(1)


@monitor_app.command("report")
@handle_errors
def report_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION.")] = "",
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the report.")] = None,
    outcomes: Annotated[Path | None, typer.Option("--outcomes", help=_OUTCOME_HELP)] = None,
    key: Annotated[str, typer.Option(help="Entity key column (as logged).")] = "",
    label: Annotated[str, typer.Option(help="Outcome column, 1 = bad.")] = "label",
    observed_at: Annotated[
        str, typer.Option("--observed-at", help="When each outcome became known.")
    ] = "observed_at",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Count outcomes known by then (default: now).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First time (UTC, ISO-8601).")] = None,
    end: Annotated[str | None, typer.Option(help="End time, excluded (UTC).")] = None,
    every: Annotated[
        str | None,
        typer.Option(help="Window: D (day) or W (ISO week); default monitoring.every."),
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """HTML dashboard (and JSON of every figure) of a model version's drift and, with
    --outcomes, its realised performance by vintage, with the alerts of lendml.yaml's rules.

    Writes OUT/monitoring.html, OUT/monitoring.json and OUT/metrics.prom (Prometheus text).
    """
    from lendml.errors import ConfigError
    from lendml.monitoring.report import monitoring_report

    if not model or out is None:
        raise ConfigError("--model and --out are required: NAME@champion and a folder.")
    table = _outcomes(outcomes, key, label, observed_at)
    with open_project(project) as p:
        report = monitoring_report(
            p.registry,
            p.config.prediction_log,
            p.root,
            model,
            outcomes=table,
            tracker=p.tracker,
            as_of=as_of,
            start=start,
            end=end,
            every=_every(every),  # type: ignore[arg-type]
            rules=p.config.monitoring,
        )
    paths = report.write(out)
    firing = {rule: n for rule, n in report.firing.items() if n}
    console.print(
        f"{report.model}/{report.version}: {report.drift.table['window'].nunique()} window(s), "
        f"{len(report.alerts)} alert(s) in all; firing now: "
        + (", ".join(f"{rule} {n}" for rule, n in firing.items()) if firing else "none")
    )
    for note in report.performance.notes if report.performance else ():
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"report: {paths['html']}  figures: {paths['json']}")
