"""``lendml train``: from a ``train.yaml`` in a project, from a ready table, or a reproduction."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project
from lendml.errors import ConfigError


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, booleans)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r} must look like key=value (e.g. num_leaves=63).")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _positive(raw: str | None) -> Any:
    if raw is None:
        return 1
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _table_tracker(project: Path | None, tracking_uri: str | None) -> Any:
    """The project's tracking when there is a project, else ``./lendml-runs``."""
    from lendml.core.config import CONFIG_FILE, TrackingSettings
    from lendml.registry.tracking import Tracker

    if project is not None and (project / CONFIG_FILE).exists():
        settings = open_project(project).config.tracking
        root = project
    else:
        settings = TrackingSettings(
            uri="sqlite:///lendml-runs/mlflow.db", artifacts="lendml-runs/artifacts"
        )
        root = Path.cwd()
    uri = tracking_uri or os.environ.get("LENDML_TRACKING_URI")
    if uri:
        settings = settings.model_copy(update={"uri": uri})
    return Tracker(settings, root=root)


def _summary(result: Any) -> None:
    table = Table(title=f"run {result.run_id} — {result.name} ({result.model.kind})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "auc",
        "test_auc",
        "test_gini",
        "test_logloss",
        "test_pr_auc",
        "valid_auc",
        "cv_auc_mean",
        "cv_auc_std",
        "best_iteration",
    ):
        if key in result.metrics and result.metrics[key] is not None:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    console.print(table)
    if result.split.get("excluded"):
        console.print(f"rows left out of the split: {result.split['excluded']}")
    if result.report_dir:
        console.print(f"report: {result.report_dir / 'report.html'}")


def train(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A train.yaml (project mode).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="A ready .csv, .csv.gz or .parquet table.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="The label column (with --data).")] = None,
    positive: Annotated[
        str | None, typer.Option(help="The label value of the bad outcome (default 1).")
    ] = None,
    drop: Annotated[list[str] | None, typer.Option(help="A column to leave out.")] = None,
    time: Annotated[str | None, typer.Option(help="Time column: out-of-time test split.")] = None,
    test_from: Annotated[
        str | None, typer.Option("--test-from", help="First time value of the test part.")
    ] = None,
    cv: Annotated[int, typer.Option(help="Folds of stratified K-fold (no --time).")] = 5,
    trials: Annotated[int, typer.Option(help="Optuna trials (0: no tuning).")] = 0,
    minutes: Annotated[float | None, typer.Option(help="Tuning budget in minutes.")] = None,
    tuning_cv: Annotated[
        int,
        typer.Option(
            "--tuning-cv",
            help="Score each trial by K-fold CV over the training rows (0: the validation part).",
        ),
    ] = 0,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL shared by workers.")
    ] = None,
    kind: Annotated[str, typer.Option("--model-kind", help="lightgbm|scorecard|torch_mlp")] = (
        "lightgbm"
    ),
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A model parameter, key=value.")
    ] = None,
    protected: Annotated[
        list[str] | None, typer.Option(help="A protected attribute: fairness tests only.")
    ] = None,
    post_outcome: Annotated[
        list[str] | None,
        typer.Option(
            "--post-outcome",
            help="A column known only after the outcome: refused as an input (a dataset.json "
            "beside the table adds its declared ones).",
        ),
    ] = None,
    allow_protected: Annotated[
        list[str] | None, typer.Option("--allow-protected", help="Allow one as an input.")
    ] = None,
    cutoff: Annotated[
        float | None, typer.Option(help="Approve when P(bad) < cutoff (fairness figures).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: the file's name).")] = None,
    metrics_out: Annotated[
        Path | None, typer.Option("--metrics-out", help="Write every figure as JSON here.")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where report.html etc. go.")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (--data).")
    ] = None,
    reproduce: Annotated[
        str | None, typer.Option("--reproduce", help="Rebuild the model of this run id.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits, tuning and the model.")] = 42,
    project: ProjectOpt = Path("."),
) -> None:
    """Train, evaluate and track a model.

    Project mode: `lendml train --config train.yaml`. Ready table:
    `lendml train --data loans.parquet --label bad [--time year --test-from 2014]`.
    Reproduction: `lendml train --reproduce RUN_ID`.
    """
    modes = [m for m in (config, data, reproduce) if m is not None]
    if len(modes) != 1:
        raise ConfigError("Give exactly one of --config, --data or --reproduce.")
    if reproduce is not None:
        _reproduce(reproduce, project, tracking_uri)
        return
    if config is not None:
        with open_project(project) as p:
            path = config if config.is_absolute() else Path.cwd() / config
            result = p.train(path, report_dir=report_dir)
    else:
        from lendml.training.data import TableSpec, declared_post_outcome
        from lendml.training.run import train_table
        from lendml.training.trainer import ModelPlan, TuningPlan

        if label is None:
            raise ConfigError("--data needs --label: the column holding the outcome.")
        params = _parse_params(param or [])
        if kind == "lightgbm":
            params.setdefault("seed", seed)
        spec = TableSpec(
            label=label,
            positive=_positive(positive),
            drop=tuple(drop or ()),
            time=time,
            test_from=test_from,
            cv=cv,
            protected=tuple(protected or ()),
            allow_protected=tuple(allow_protected or ()),
            seed=seed,
            post_outcome=tuple(
                dict.fromkeys([*(post_outcome or ()), *declared_post_outcome(data)])
            ),
        )
        plan = ModelPlan(
            kind=kind,
            params=params,
            tuning=TuningPlan(
                trials=trials, minutes=minutes, storage=storage, seed=seed, cv=tuning_cv
            ),
        )
        run_name = name or data.name.split(".")[0]
        result = train_table(
            data,
            spec,
            plan,
            tracker=_table_tracker(project, tracking_uri),
            name=run_name,
            report_dir=report_dir or Path("lendml-runs") / "reports" / run_name,
            cutoff=cutoff,
        )
    _summary(result)
    if metrics_out is not None:
        metrics_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = metrics_out.with_name(f".{metrics_out.name}.tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str))
        tmp.replace(metrics_out)
        console.print(f"metrics: {metrics_out}")


def _reproduce(run_id: str, project: Path, tracking_uri: str | None) -> None:
    from lendml.core.config import CONFIG_FILE

    if (project / CONFIG_FILE).exists() and tracking_uri is None:
        with open_project(project) as p:
            rep = p.reproduce(run_id)
    else:
        from lendml.training.run import reproduce_run

        rep = reproduce_run(_table_tracker(None, tracking_uri), run_id)
    verdict = "[green]identical[/]" if rep.identical else "[red]DIFFERENT[/]"
    console.print(f"run {run_id}: rebuilt model is {verdict} (sha256 {rep.rebuilt_sha256[:16]}…)")
    if not rep.data_matches:
        console.print("[yellow]warning:[/] the data changed since the run (fingerprint differs)")
    if not rep.identical:
        raise typer.Exit(code=1)


def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="NAME@ALIAS or NAME/VERSION.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled rows: .csv, .csv.gz, .parquet.")],
    label: Annotated[str, typer.Option(help="The label column.")],
    positive: Annotated[str | None, typer.Option(help="The bad label value (default 1).")] = None,
    champion: Annotated[
        str | None, typer.Option("--champion", help="Compare against this model (DeLong).")
    ] = None,
    protected: Annotated[
        list[str] | None, typer.Option(help="A protected attribute for fair-lending figures.")
    ] = None,
    segment: Annotated[list[str] | None, typer.Option(help="A segment column.")] = None,
    cutoff: Annotated[float | None, typer.Option(help="Approve when P(bad) < cutoff.")] = None,
    margin: Annotated[float, typer.Option(help="Non-inferiority margin in AUC.")] = 0.01,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html etc.")] = Path(
        "evaluation"
    ),
    project: ProjectOpt = Path("."),
) -> None:
    """Evaluate a registered model on labelled rows (optionally against a champion)."""
    from lendml.training.assess import evaluate_registered
    from lendml.training.data import read_table

    frame = read_table(data)
    with open_project(project) as p:
        result = evaluate_registered(
            p.registry,
            model,
            frame,
            label=label,
            positive=_positive(positive),
            champion_ref=champion,
            protected=tuple(protected or ()),
            segments=tuple(segment or ()),
            cutoff=cutoff,
            margin=margin,
            out_dir=out,
        )
    figures = result.evaluation.to_dict()
    console.print(f"evaluated {model} on {result.rows:,} rows → {out / 'report.html'}")
    console.print(json.dumps(_headline(figures), indent=2, default=str))


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ("auc", "gini", "ks", "logloss", "brier", "pr_auc")
    found: dict[str, Any] = {}
    stack: list[Any] = [figures]
    while stack and len(found) < len(keys):
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in keys and k not in found and isinstance(v, int | float):
                    found[k] = v
                elif isinstance(v, dict):
                    stack.append(v)
    return found


def register(app: typer.Typer) -> None:
    """Add the training commands to the CLI."""
    app.command("train")(handle_errors(train))
    app.command("evaluate")(handle_errors(evaluate))
