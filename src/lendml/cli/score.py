"""``lendml score``: score a Parquet or CSV file with a registered model (or a model folder).

Calls :func:`lendml.serving.batch.score_file`; nothing here holds logic of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project
from lendml.errors import ConfigError

COMPILED_CACHE = ".compiled"  # inside the registry's model cache; model names never start with "."


def score(
    input_path: Annotated[
        Path, typer.Option("--input", "-i", help="Parquet file or folder, or CSV (.csv, .csv.gz).")
    ],
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION in the project's registry."),
    ] = None,
    model_path: Annotated[
        Path | None,
        typer.Option("--model-path", help="A model artifact folder instead (no project needed)."),
    ] = None,
    reasons: Annotated[
        bool, typer.Option("--reasons", help="Add up to 4 adverse reason codes per row.")
    ] = False,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference", help="JSON reference point for reasons (default: the model's own)."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="A feature that must never be a reason (repeatable)."),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", "-k", help="An input column to copy to the output (repeatable)."),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows per chunk (bounds memory).")
    ] = 100_000,
    threads: Annotated[
        int | None, typer.Option("--threads", help="Threads (default: every core).")
    ] = None,
    no_compile: Annotated[
        bool, typer.Option("--no-compile", help="Use LightGBM's Booster.predict, not lleaves.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Score every row of a file and write score, probability (and reasons) as Parquet."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lendml.models.compiled import CompiledScorer
    from lendml.serving.batch import score_file

    loaded_model, cache_dir, label = _load(model, model_path, project)
    scorer = None
    if loaded_model.kind == "lightgbm":
        with console.status("Compiling the model (large models take minutes the first time)…"):
            scorer = CompiledScorer.from_model(
                loaded_model, cache_dir=cache_dir, compile=not no_compile, n_jobs=threads
            )
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("score", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        summary = score_file(
            loaded_model,
            input_path,
            output_path,
            reasons=reasons,
            reference=reference,
            exclude=exclude or (),
            keep=keep or (),
            chunk_rows=chunk_rows,
            threads=threads,
            scorer=scorer,
            progress=progress,
        )
    if as_json:
        typer.echo(json.dumps({"model": label, **summary.to_dict()}, indent=2, default=str))
        return
    _print(summary, label)


def _load(model: str | None, model_path: Path | None, project: Path) -> tuple[Any, Any, str]:
    """The model, where its compiled object is cached, and how to name it."""
    if (model is None) == (model_path is None):
        raise ConfigError(
            "Name the model with --model NAME@ALIAS (a registered version) or --model-path "
            "DIR (a model artifact folder), not both and not neither."
        )
    if model_path is not None:
        from lendml.models import load_model

        return load_model(model_path), None, str(model_path)
    with console.status(f"Loading {model}…"), open_project(project) as p:
        registry = p.registry
        loaded = registry.load(model)
    return loaded.model, registry.cache_dir / COMPILED_CACHE, loaded.info.ref


def _print(summary: Any, label: str) -> None:
    console.print(
        f"Scored [bold]{summary.rows:,}[/] rows with {label} in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s, {summary.backend}) → {summary.output}",
        highlight=False,
    )
    if summary.backend == "lleaves":
        how = "loaded from the cache" if summary.compiled_from_cache else "compiled"
        console.print(f"  compiled code {how} in {summary.compile_seconds:.1f} s", highlight=False)
    if summary.fallback_reason:
        console.print(f"  [yellow]not compiled:[/] {summary.fallback_reason}", highlight=False)
    if summary.reasons:
        ref = summary.reference or {}
        console.print(
            f"  reasons against the reference from {ref.get('source')} (cutoff "
            f"{ref.get('cutoff')}, {ref.get('n_rows')} rows); never reasons: "
            f"{', '.join(summary.excluded) or '-'}",
            highlight=False,
        )
    for name, info in summary.unknown_categories.items():
        console.print(
            f"  [yellow]{info['count']:,} unseen value(s) of {name!r}[/] scored as missing, "
            f"e.g. {info['examples']!r}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``lendml score`` to the CLI."""
    app.command("score")(handle_errors(score))
