"""``lendml simulate``: replay months of the synthetic world through serving and the loop.

Thin: calls :func:`lendml.pipelines.simulate.simulate` and prints its outcomes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lendml.cli.common import console, handle_errors


@handle_errors
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="New or empty folder for the project.")],
    borrowers: Annotated[int, typer.Option(help="Borrowers in the world.")] = 40_000,
    months: Annotated[int, typer.Option(help="Months in the world.")] = 30,
    shift_month: Annotated[int, typer.Option(help="Month of the regime shift.")] = 18,
    horizon: Annotated[int, typer.Option(help="Months until an outcome is known.")] = 3,
    first_champion_month: Annotated[
        int, typer.Option(help="Month whose start trains the first champion.")
    ] = 12,
    seed: Annotated[int, typer.Option(help="World seed.")] = 7,
    selection: Annotated[
        bool,
        typer.Option(help="Withhold the outcomes of declined applications from the loop."),
    ] = True,
    explore_percent: Annotated[
        float, typer.Option(help="Approval holdout: % of would-be declines approved.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every figure as JSON.")] = False,
) -> None:
    """Replay the world month by month: serve → log → delayed labels → loop pass.

    Writes the project into OUT and the report to OUT/reports/simulation/report.html.
    Exit code 0 when all four outcomes hold, 1 when one does not.
    """
    from lendml.errors import ConfigError
    from lendml.pipelines.simulate import SimulationSettings, simulate

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; give a new or empty folder.")
    settings = SimulationSettings(
        borrowers=borrowers,
        seed=seed,
        months=months,
        shift_month=shift_month,
        horizon_months=horizon,
        first_champion_month=first_champion_month,
        selection=selection,
        explore_percent=explore_percent,
    )
    with console.status("simulating…") as status:

        def progress(text: str) -> None:
            console.print(f"  {text}", highlight=False)
            status.update(text)

        result = simulate(out, settings=settings, progress=None if as_json else progress)
    outcomes = result.outcomes
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        table = Table(title="simulation outcomes")
        table.add_column("outcome")
        table.add_column("held")
        for name, value in outcomes.items():
            table.add_row(
                name.replace("_", " "), "[green]yes[/]" if value["passed"] else "[red]no[/]"
            )
        console.print(table)
        console.print(f"report: {result.report}")
    if not all(v["passed"] for v in outcomes.values()):
        raise typer.Exit(code=1)
