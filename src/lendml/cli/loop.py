"""``lendml loop``: run the continuous-learning loop once, as a daemon, and read its audit trail.

Thin: every command calls :mod:`lendml.pipelines`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, err_console, handle_errors, open_project

loop_app = typer.Typer(
    help="The continuous-learning loop: refresh → triggers → retrain → gate → promote.",
    no_args_is_help=True,
)

STATUS_STYLE = {
    "promoted": "bold green",
    "shadow": "cyan",
    "rejected": "yellow",
    "no_trigger": "dim",
    "shadow_pending": "cyan",
}


def _print_pass(result: Any) -> None:
    style = STATUS_STYLE.get(result.status, "")
    console.print(
        f"[{style}]{result.status}[/] — loop pass {result.pass_id} for {result.model} as of "
        f"{result.as_of:%Y-%m-%d %H:%M} UTC: {result.summary}",
        highlight=False,
    )
    if result.reused:
        console.print(f"  finished steps read back (not redone): {', '.join(result.reused)}")
    table = Table(title="steps", show_lines=False)
    table.add_column("step")
    table.add_column("decision")
    table.add_column("seconds", justify="right")
    table.add_column("summary", overflow="fold")
    for step, out in result.steps.items():
        table.add_row(
            step,
            str(out.get("decision", "")),
            f"{result.timings.get(step, 0.0):.1f}",
            str(out.get("summary", ""))[:300],
        )
    console.print(table)


@loop_app.command("run")
@handle_errors
def run_cmd(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The pass's time (UTC; default now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the pass as JSON.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """One pass (cron-friendly): resumes a pass that was interrupted, never promotes twice.

    Exit code 0 when the pass ends (promoted, rejected by the gate or no trigger), 2 on an
    error (nothing promoted; the failure is in `lendml loop history`).
    """
    from lendml.pipelines import run_pass

    with open_project(project) as p:
        progress = None
        if not as_json:

            def progress(step: str, state: str) -> None:
                console.print(f"  [dim]{step}: {state}[/]", highlight=False)

        result = run_pass(p, as_of=as_of, progress=progress)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _print_pass(result)


@loop_app.command("replay")
@handle_errors
def replay_cmd(
    start: Annotated[str, typer.Option(help="First pass's as-of time (UTC).")],
    end: Annotated[str, typer.Option(help="Last pass's as-of time (UTC), included.")],
    every: Annotated[str, typer.Option(help="Time between passes, e.g. 7d, 365d.")] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="Print every pass as JSON.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Backtest the loop: one pass at each as-of time from START to END, oldest first.

    Each pass sees only what was known at its as-of time (spine rows and labels observed by
    then), so a replay over history shows what the loop would have done. Passes already
    run are read back.
    """
    from lendml.pipelines import replay

    with open_project(project) as p:
        results = replay(
            p,
            start=start,
            end=end,
            every=every,
            progress=None if as_json else lambda r: _print_pass(r),
        )
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2, default=str))


@loop_app.command("daemon")
@handle_errors
def daemon_cmd(
    every: Annotated[
        str | None, typer.Option(help="Period between passes (default: loop.every).")
    ] = None,
    max_passes: Annotated[
        int | None, typer.Option(help="Stop after this many passes (default: run until stopped).")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Run a pass now and then every period until stopped (SIGTERM/SIGINT end it cleanly).

    A failed pass is logged and retried at the next period; the daemon keeps running.
    """
    from lendml.core.timeutil import parse_duration
    from lendml.errors import LendmlError
    from lendml.pipelines import run_pass

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        err_console.print(f"signal {signum}: stopping after the current pass")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    passes = 0
    while not stop.is_set():
        with open_project(project) as p:
            period = parse_duration(every or p.config.loop.every).total_seconds()
            started = time.monotonic()
            try:
                _print_pass(run_pass(p))
            except LendmlError as exc:
                err_console.print(f"[red]pass failed:[/] {type(exc).__name__}: {exc.message}")
        passes += 1
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(max(0.0, period - (time.monotonic() - started)))


@loop_app.command("history")
@handle_errors
def history_cmd(
    limit: Annotated[int, typer.Option(help="Show the newest N entries.")] = 50,
    pass_id: Annotated[
        str | None, typer.Option("--pass", help="Only the entries of this pass.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print entries as JSON lines.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """The audit trail: every trigger, gate and promotion decision with its evidence."""
    from lendml.pipelines import loop_history

    with open_project(project) as p:
        entries = loop_history(p)
    if pass_id:
        entries = [e for e in entries if e.get("pass_id") == pass_id]
    entries = entries[-limit:]
    if as_json:
        for e in entries:
            typer.echo(json.dumps(e, default=str))
        return
    if not entries:
        console.print("The loop has not run yet (lendml loop run).")
        return
    table = Table(title="loop history (oldest first)")
    for col in ("as of", "pass", "step", "decision", "summary"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.get("as_of", ""))[:10],
            str(e.get("pass_id", "")),
            str(e.get("step", "")),
            str(e.get("decision", "")),
            str(e.get("summary", ""))[:400],
        )
    console.print(table)
