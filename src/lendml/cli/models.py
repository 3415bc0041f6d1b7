"""``lendml models``: register, list, show, verify, promote, roll back and audit model versions.

Every command reads the project's ``tracking:`` settings and calls
:class:`lendml.registry.Registry`; nothing here holds logic of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project

models_app = typer.Typer(
    help="Registered models: register, list, show, verify, promote, roll back, history.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
AliasOpt = Annotated[str, typer.Option("--alias", "-a", help="champion, challenger or shadow.")]
ReasonOpt = Annotated[
    str, typer.Option("--reason", "-r", help="Why (kept in the model's history).")
]
UserOpt = Annotated[
    str | None,
    typer.Option("--user", help="Who acts (default: $LENDML_USER, else the login name)."),
]


@contextmanager
def _registry(project: Path) -> Iterator[Any]:
    """The project's registry, with MLflow's download progress bars off for the command."""
    from lendml.registry import Registry

    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with open_project(project) as p:
            yield Registry(p.config.tracking, root=p.root)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _short(sha: str | None) -> str:
    return (sha or "-")[:12]


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@models_app.command("register")
@handle_errors
def register_cmd(
    run_id: Annotated[str, typer.Argument(help="The training run's id.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.")],
    artifact_path: Annotated[
        str, typer.Option("--artifact-path", help="The model folder in the run's artifacts.")
    ] = "model",
    description: Annotated[
        str | None, typer.Option("--description", help="Text stored on the version.")
    ] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Verify a run's model and register it as a new version of NAME."""
    with _registry(project) as reg:
        info = reg.register(run_id, name, artifact_path=artifact_path, description=description)
    if as_json:
        _echo_json(info.to_dict())
        return
    console.print(
        f"Registered [bold]{info.name}[/] version [bold]{info.version}[/] from run {run_id} "
        f"(manifest sha256 {_short(info.manifest_sha256)}…)"
    )
    for key, value in sorted(info.lineage.items()):
        console.print(f"  {key} = {value}", highlight=False)


@models_app.command("list")
@handle_errors
def list_cmd(as_json: JsonOpt = False, project: ProjectOpt = Path(".")) -> None:
    """List registered models with their latest version and aliases."""
    with _registry(project) as reg:
        models = reg.list_models()
    if as_json:
        _echo_json([m.to_dict() | {"versions": [v.version for v in m.versions]} for m in models])
        return
    table = Table(title="Registered models")
    for col in ("name", "versions", "latest", "aliases", "updated (UTC)"):
        table.add_column(col)
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())) or "-"
        table.add_row(
            m.name, str(len(m.versions)), str(m.latest_version or "-"), aliases, _when(m.updated_at)
        )
    console.print(table)
    if not models:
        console.print("No registered models yet: `lendml models register RUN_ID --name NAME`.")


@models_app.command("show")
@handle_errors
def show_cmd(
    ref: Annotated[
        str, typer.Argument(help="NAME (the model and its versions), NAME@ALIAS or NAME/VERSION.")
    ],
    as_json: JsonOpt = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Show a registered model, or one version with its lineage."""
    with _registry(project) as reg:
        if "@" in ref or "/" in ref.removeprefix("models:/"):
            info = reg.resolve(ref)
            if as_json:
                _echo_json(info.to_dict())
                return
            _print_version(info)
            return
        model = reg.get_model(ref.removeprefix("models:/"))
    if as_json:
        _echo_json(model.to_dict())
        return
    console.print(f"[bold]{model.name}[/]  {model.description or ''}")
    table = Table()
    for col in ("version", "aliases", "run", "kind", "feature service", "sha256", "created (UTC)"):
        table.add_column(col)
    for v in model.versions:
        service = v.lineage.get("lendml.feature_service", "-")
        if "lendml.feature_service_version" in v.lineage:
            service += f"@{v.lineage['lendml.feature_service_version']}"
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            (v.run_id or "-")[:12],
            v.lineage.get("lendml.model_kind", "-"),
            service,
            _short(v.manifest_sha256),
            _when(v.created_at),
        )
    console.print(table)


def _print_version(info: Any) -> None:
    table = Table(title=f"{info.name} version {info.version}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows = {
        "aliases": ", ".join(info.aliases) or "-",
        "run_id": info.run_id or "-",
        "source": info.source,
        "manifest_sha256": info.manifest_sha256 or "-",
        "created_at": _when(info.created_at),
        "description": info.description or "-",
        **dict(sorted(info.lineage.items())),
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)


@models_app.command("verify")
@handle_errors
def verify_cmd(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME/VERSION or NAME (champion).")],
    project: ProjectOpt = Path("."),
) -> None:
    """Download a version afresh and check every file against its registered hash."""
    with _registry(project) as reg:
        info = reg.verify(ref)
    console.print(f"{info.ref}: every file matches manifest sha256 {_short(info.manifest_sha256)}…")


@models_app.command("promote")
@handle_errors
def promote_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="The version to promote.")],
    reason: ReasonOpt,
    alias: AliasOpt = "champion",
    user: UserOpt = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Point an alias (default champion) at VERSION, recording who, when and why."""
    with _registry(project) as reg:
        event = reg.promote(name, version, alias=alias, reason=reason, user=user)
    _print_event(name, event, as_json)


@models_app.command("rollback")
@handle_errors
def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: ReasonOpt,
    alias: AliasOpt = "champion",
    user: UserOpt = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Give an alias back to the version that held it before (from the history)."""
    with _registry(project) as reg:
        event = reg.rollback(name, alias=alias, reason=reason, user=user)
    _print_event(name, event, as_json)


def _print_event(name: str, event: Any, as_json: bool) -> None:
    if as_json:
        _echo_json({"name": name, **event.to_dict()})
        return
    verb = "Promoted" if event.action == "promote" else "Rolled back"
    was = f"was version {event.previous_version}" if event.previous_version else "was unset"
    console.print(
        f"{verb} [bold]{name}/{event.version}[/] to [bold]{event.alias}[/] ({was}) "
        f"by {event.user} at {_when(event.at)}: {event.reason}",
        highlight=False,
    )


@models_app.command("history")
@handle_errors
def history_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias: Annotated[str | None, typer.Option("--alias", "-a", help="Only this alias.")] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Who moved which alias to which version, when and why (oldest first)."""
    with _registry(project) as reg:
        events = reg.history(name, alias)
    if as_json:
        _echo_json([{"name": name, **e.to_dict()} for e in events])
        return
    table = Table(title=f"History of {name}")
    for col in ("#", "at (UTC)", "action", "alias", "version", "previous", "user", "reason"):
        table.add_column(col, overflow="fold")
    for e in events:
        action = e.action if e.state == "done" else f"{e.action} ({e.state})"
        table.add_row(
            str(e.seq),
            _when(e.at),
            action,
            e.alias,
            str(e.version),
            str(e.previous_version or "-"),
            e.user,
            e.reason,
        )
    console.print(table)
    if not events:
        console.print(f"No promotions of {name} yet.")
