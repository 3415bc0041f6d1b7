"""``lendml`` CLI entry point. Holds no logic the Python API lacks."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lendml.cli import score as score_commands
from lendml.cli import serve as serve_commands
from lendml.cli import simulate as simulate_commands
from lendml.cli import train as train_commands
from lendml.cli.common import (
    ProjectOpt,
    console,
    handle_errors,
    open_project,
)
from lendml.cli.keys import keys_app
from lendml.cli.log import log_app
from lendml.cli.loop import loop_app
from lendml.cli.models import models_app
from lendml.cli.monitor import monitor_app

app = typer.Typer(
    name="lendml",
    help="lendml: features, training sets and models for credit and payments risk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="Inspect applied feature views and services.", no_args_is_help=True)
datasets_app = typer.Typer(help="Synthetic and public datasets.", no_args_is_help=True)
app.add_typer(features_app, name="features")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(log_app, name="log")
app.add_typer(monitor_app, name="monitor")
app.add_typer(loop_app, name="loop")
app.command("simulate")(simulate_commands.simulate_cmd)

train_commands.register(app)
serve_commands.register(app)
score_commands.register(app)


@app.callback()
def _quiet_libraries() -> None:
    """Library chatter (MLflow's migrations log and download bars) stays out of the CLI."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


# Kept under their old names for the commands below.
_project = open_project


@app.command()
@handle_errors
def init(directory: Annotated[Path, typer.Argument(help="New project folder.")]) -> None:
    """Create a project folder with lendml.yaml and an example features.py."""
    from lendml.project import Project

    p = Project.init(directory)
    console.print(f"Created project [bold]{p.config.name}[/] in {p.root}")
    console.print("Next: edit features.py, then run [bold]lendml apply[/].")


@app.command()
@handle_errors
def apply(project: ProjectOpt = Path(".")) -> None:
    """Validate the feature definitions and record them in the catalog."""
    with _project(project) as p:
        report = p.apply()
    for what, style in (("added", "green"), ("changed", "yellow"), ("unchanged", "dim")):
        for item in report[what]:
            console.print(f"[{style}]{what:>9}[/] {item}")
    console.print(
        f"Applied: {len(report['added'])} added, {len(report['changed'])} changed, "
        f"{len(report['unchanged'])} unchanged."
    )


@features_app.command("list")
@handle_errors
def features_list(project: ProjectOpt = Path(".")) -> None:
    """List applied feature views and services."""
    with _project(project) as p:
        views = p.list_feature_views()
        services = p.list_feature_services()
    table = Table(title="Feature views")
    for col in ("name", "version", "entity", "features", "applied"):
        table.add_column(col)
    for v in views:
        spec = v.spec
        names = [a["name"] for a in spec.get("aggregations", [])] + [
            f["name"] for f in spec.get("features", [])
        ]
        entity = spec.get("entity", {}).get("name", "(derived)")
        table.add_row(v.name, v.version, entity, str(len(names)), v.applied_at[:19])
    console.print(table)
    st = Table(title="Feature services")
    for col in ("name", "version", "features"):
        st.add_column(col)
    for s in services:
        st.add_row(s.name, s.version, ", ".join(s.spec.get("features", [])))
    console.print(st)


@features_app.command("show")
@handle_errors
def features_show(
    name: Annotated[str, typer.Argument(help="A feature view or service name.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Show one applied feature view or service as JSON."""
    from lendml.errors import FeatureNotFound

    with _project(project) as p:
        try:
            entry = p.get_feature_view(name)
        except FeatureNotFound:
            entry = p.catalog.get("feature_services", name)
    console.print_json(json.dumps({"name": entry.name, "version": entry.version, **entry.spec}))


@app.command("training-set")
@handle_errors
def training_set(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    spine: Annotated[Path, typer.Option("--spine", help="Spine file (.parquet/.csv).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Spine as-of column.")] = "as_of",
    engine: Annotated[str | None, typer.Option("--engine", help="duckdb or spark.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Build a point-in-time-correct training set and write it as Parquet."""
    with console.status("Building training set…"), _project(project, engine) as p:
        ts = p.training_set(service, spine, as_of=as_of)
        ts.to_parquet(out)
    console.print(
        f"Wrote {len(ts):,} rows × {ts.table.num_columns} columns to {out} "
        f"(service {ts.service}@{ts.service_version}, spine {ts.spine_fingerprint})"
    )


@app.command("materialize")
@handle_errors
def materialize_cmd(
    start: Annotated[str, typer.Option("--start", help="Start (exclusive), ISO-8601 UTC.")],
    end: Annotated[str, typer.Option("--end", help="End (inclusive), ISO-8601 UTC.")],
    view: Annotated[list[str] | None, typer.Option("--view", help="Only these views.")] = None,
    every: Annotated[str, typer.Option("--every", help="As-of grid step.")] = "1d",
    chunk: Annotated[str, typer.Option("--chunk", help="Rows computed per chunk of time.")] = "7d",
    project: ProjectOpt = Path("."),
) -> None:
    """Compute feature views into offline Parquet tables and the online store."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar, _project(project) as p:
        tasks: dict[str, Any] = {}

        def progress(view_name: str, done: int, total: int) -> None:
            if view_name not in tasks:
                tasks[view_name] = bar.add_task(f"materialize {view_name}", total=max(total, 1))
            bar.update(tasks[view_name], completed=done)

        report = p.materialize(
            start=start, end=end, views=view, every=every, chunk=chunk, progress=progress
        )
    for name, stats in report.views.items():
        console.print(
            f"{name}: {stats['entities']:,} entities, {stats['offline_rows']:,} offline rows in "
            f"{stats['partitions']} partitions, {stats['online_rows']:,} online rows"
        )


@app.command("online")
@handle_errors
def online_cmd(
    service: Annotated[str, typer.Argument(help="Feature service name.")],
    key: Annotated[
        list[str],
        typer.Option(
            "--key",
            help="KEY_COLUMN=VALUE, one entity per option (repeatable); an entity with "
            "several key columns: COL=VALUE,COL=VALUE.",
        ),
    ],
    project: ProjectOpt = Path("."),
) -> None:
    """Read a service's features for entity keys from the online store (JSON lines)."""
    from lendml.errors import ConfigError

    rows: list[dict[str, Any]] = []
    for item in key:
        if "=" not in item:
            raise ConfigError(
                f"--key {item!r} must look like COLUMN=VALUE (or COL=VALUE,COL=VALUE for an "
                "entity with several key columns)."
            )
        parts = item.split(",")
        # Several columns only when every part is COL=VALUE; else a value holds a comma.
        pairs = parts if all("=" in part for part in parts) else [item]
        row: dict[str, Any] = {}
        for pair in pairs:
            col, _, raw = pair.partition("=")
            row[col] = int(raw) if raw.lstrip("-").isdigit() else raw
        rows.append(row)
    with _project(project) as p:
        df = p.online_features(service, rows)
    for rec in df.to_dict(orient="records"):
        console.print_json(json.dumps(rec, default=str))


@datasets_app.command("synth")
@handle_errors
def datasets_synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (new or empty).")],
    borrowers: Annotated[int, typer.Option("--borrowers", help="Number of borrowers.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 42,
    months: Annotated[int, typer.Option("--months", help="Months of history.")] = 24,
    shift_month: Annotated[
        int | None, typer.Option("--shift-month", help="Regime-shift month index.")
    ] = 15,
    horizon: Annotated[int, typer.Option("--horizon", help="Outcome horizon in months.")] = 12,
) -> None:
    """Generate the synthetic lending world as partitioned Parquet."""
    from lendml.datasets import generate_world

    with console.status(f"Generating {borrowers:,} borrowers…"):
        summary = generate_world(
            out,
            borrowers=borrowers,
            seed=seed,
            months=months,
            shift_month=shift_month,
            outcome_horizon_months=horizon,
        )
    console.print_json(json.dumps(summary.to_dict(), default=str))


@datasets_app.command("import")
@handle_errors
def datasets_import(
    name: Annotated[str, typer.Argument(help="taiwan, lending_club, fdh or german.")],
    path: Annotated[Path, typer.Option("--path", help="The dataset folder or its file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for this dataset.")],
    leakage_path: Annotated[
        Path | None,
        typer.Option("--leakage-path", help="lending_club: add the leakage file (post_outcome)."),
    ] = None,
    statements: Annotated[
        bool, typer.Option("--statements", help="taiwan: also write the monthly statements.")
    ] = False,
) -> None:
    """Import a real public dataset as Parquet (UTC times) plus dataset.json."""
    from lendml.datasets import export, read_public

    options = {"leakage_path": leakage_path} if leakage_path is not None else {}
    with console.status(f"Importing {name}…"):
        dataset = read_public(name, path, **options)
        target = export(dataset, out, statements=statements)
    console.print(
        f"Wrote {len(dataset.frame):,} rows ({dataset.label} rate {dataset.positive_rate:.2%}) "
        f"to {target}; timestamp {dataset.timestamp!r}, post_outcome "
        f"{list(dataset.post_outcome)}. Metadata: {target.parent / 'dataset.json'}"
    )


@app.command()
@handle_errors
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Demo project folder (new or empty).")
    ] = Path("demo-project"),
    borrowers: Annotated[int, typer.Option("--borrowers")] = 3000,
    loop_borrowers: Annotated[
        int, typer.Option("--loop-borrowers", help="Borrowers of the loop's simulated world.")
    ] = 12_000,
) -> None:
    """Run the end-to-end tour on embedded defaults."""
    import shutil

    from lendml.cli.demo import run_demo

    if directory.exists() and (directory / "lendml.yaml").exists():
        shutil.rmtree(directory)  # a previous demo run: start fresh
    run_demo(directory, borrowers=borrowers, loop_borrowers=loop_borrowers, console=console)


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - python -m lendml.cli.main
    main()
