"""``lendml log``: show, erase and prune the prediction log.

Every command reads the project's ``prediction_log:`` settings and calls
:mod:`lendml.serving.prediction_log`; nothing here holds logic of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project

log_app = typer.Typer(
    help="The prediction log: show records, erase an entity's records, prune old ones.",
    no_args_is_help=True,
)


def _settings(project: Path) -> tuple[Any, Path]:
    with open_project(project) as p:
        return p.config.prediction_log, p.root


def _parse_key(item: str) -> tuple[str, str]:
    from lendml.errors import ConfigError

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"{item!r} is not KEY=VALUE; name the entity key and its value, e.g. customer_id=42."
        )
    return key.strip(), value


@log_app.command("show")
@handle_errors
def show(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N records.")] = 20,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    start: Annotated[str | None, typer.Option("--start", help="From (ISO-8601 UTC).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Before (ISO-8601 UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines (for scripts).")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Show the newest logged records (oldest of them first)."""
    from lendml.serving.prediction_log import open_prediction_log

    settings, root = _settings(project)
    plog = open_prediction_log(settings, root, start=False)
    try:
        frame = plog.read(start, end, model=model, last=limit, flatten=False)
        waiting = plog.spool.records()
    finally:
        plog.close()
    if as_json:
        for rec in frame.to_dict(orient="records"):
            typer.echo(json.dumps(rec, default=str, sort_keys=True))
        return
    table = Table(title=f"Prediction log ({len(frame)} newest records)")
    for col in ("time", "request_id", "model", "role", "entity", "decision", "probability"):
        table.add_column(col, overflow="fold")
    for rec in frame.itertuples(index=False):
        table.add_row(
            rec.time.strftime("%Y-%m-%d %H:%M:%S"),
            rec.request_id,
            f"{rec.model}/{rec.version}",
            rec.role,
            json.dumps(rec.entity, default=str, sort_keys=True),
            # an approval of the holdout says what the cutoffs decided
            f"{rec.decision} (explore; cutoffs: {rec.policy_decision})"
            if rec.explore
            else rec.decision,
            f"{rec.probability:.4f}",
        )
    console.print(table)
    if waiting:
        console.print(f"{waiting:,} more records wait in the spool {settings.spool} for the store.")


@log_app.command("erase")
@handle_errors
def erase(
    key_value: Annotated[
        str,
        typer.Argument(metavar="KEY=VALUE", help="The entity key and value, e.g. customer_id=42."),
    ],
    project: ProjectOpt = Path("."),
) -> None:
    """Erase every record of one entity from the log's store and its spool."""
    from lendml.serving.prediction_log import erase_prediction_log

    key, value = _parse_key(key_value)
    settings, root = _settings(project)
    report = erase_prediction_log(settings, root, key, value)
    console.print(
        f"Erased {report.total:,} records with {key}={value} "
        f"({report.store:,} in the store, {report.spool:,} in the spool).",
        highlight=False,
    )


@log_app.command("prune")
@handle_errors
def prune(
    before: Annotated[
        str | None,
        typer.Option("--before", help="Delete records older than this (ISO-8601 UTC)."),
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Delete records older than the retention period (or --before)."""
    from lendml.serving.prediction_log import prune_prediction_log

    settings, root = _settings(project)
    removed = prune_prediction_log(settings, root, before=before)
    when = before or f"{settings.retention_days} days ago"
    console.print(f"Pruned {removed:,} records older than {when}.", highlight=False)
