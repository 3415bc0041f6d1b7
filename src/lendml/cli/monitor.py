"""``lendml monitor``: drift of what a model served, from the prediction log.

Thin: reads the project's registry and prediction-log settings and calls
:func:`lendml.monitoring.drift.monitor_drift`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project

monitor_app = typer.Typer(help="Monitoring: drift of served decisions.", no_args_is_help=True)


@monitor_app.command("drift")
@handle_errors
def drift_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION.")] = "",
    start: Annotated[str | None, typer.Option(help="First time (UTC, ISO-8601).")] = None,
    end: Annotated[str | None, typer.Option(help="End time, excluded (UTC).")] = None,
    every: Annotated[str, typer.Option(help="Window: D (day) or W (ISO week).")] = "D",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write every figure as JSON here.")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Drift per window of a model version's served decisions against its training data.

    Exit code 0 when nothing alerts in the latest window, 1 when something does (for cron).
    """
    from lendml.errors import ConfigError
    from lendml.monitoring.drift import monitor_drift

    if not model:
        raise ConfigError("--model is required: NAME@champion or NAME/VERSION.")
    if every not in ("D", "W"):
        raise ConfigError(f"--every must be D or W; got {every!r}.")
    with open_project(project) as p:
        mon = monitor_drift(
            p.registry,
            p.config.prediction_log,
            p.root,
            model,
            start=start,
            end=end,
            every=every,  # type: ignore[arg-type]
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(mon.to_dict(), indent=2, default=str))
        tmp.replace(out)
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
    n_alerts = int(latest["alert"].sum())
    console.print(
        f"{mon.table['window'].nunique()} window(s) read; {n_alerts} alert(s) in the latest."
        + (f" JSON: {out}" if out else "")
    )
    if n_alerts:
        raise typer.Exit(1)


@monitor_app.command("performance")
@handle_errors
def performance_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")] = "",
    outcomes: Annotated[
        Path | None, typer.Option("--outcomes", help="Outcomes table (.parquet or .csv).")
    ] = None,
    key: Annotated[str, typer.Option(help="Entity key column (as logged).")] = "",
    label: Annotated[str, typer.Option(help="Outcome column, 1 = bad.")] = "label",
    observed_at: Annotated[
        str, typer.Option("--observed-at", help="When each outcome became known.")
    ] = "observed_at",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Measure at this time (default: now).")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Only this version's decisions.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the table as JSON.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Realised performance of a model's served decisions by vintage, mature labels only."""
    from datetime import UTC, datetime

    import pandas as pd

    from lendml.errors import ConfigError
    from lendml.monitoring.performance import log_performance
    from lendml.serving.prediction_log import read_prediction_log

    if not model or outcomes is None or not key:
        raise ConfigError("--model, --outcomes and --key are required.")
    if not outcomes.is_file():
        raise ConfigError(f"--outcomes {str(outcomes)!r} is not a file.")
    if outcomes.suffix == ".parquet":
        table = pd.read_parquet(outcomes)
    elif outcomes.name.endswith((".csv", ".csv.gz")):
        table = pd.read_csv(outcomes)
    else:
        raise ConfigError(f"--outcomes must be .parquet, .csv or .csv.gz; got {outcomes.name!r}.")
    when = as_of or datetime.now(UTC).isoformat()
    with open_project(project) as p:
        log = read_prediction_log(p.config.prediction_log, p.root, model=model)
    if log.empty:
        raise ConfigError(f"The prediction log holds no decision of model {model!r}.")
    perf = log_performance(
        log, table, key=key, label=label, observed_at=observed_at, as_of=when, version=version
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(perf.to_json(orient="records", indent=2))
        tmp.replace(out)
    view = Table(title=f"{model}: realised performance by vintage as of {when}")
    for col in perf.columns:
        view.add_column(col, justify="left" if col == "vintage" else "right")
    for row in perf.itertuples(index=False):
        view.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(view)
