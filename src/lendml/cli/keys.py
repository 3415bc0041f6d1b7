"""``lendml keys``: create, list and revoke the scoring service's API keys.

Keys live hashed in the project's ``serving.keys_file``
(:class:`lendml.serving.auth.KeyStore`); a key's token is printed once, when it is made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project

if TYPE_CHECKING:
    from lendml.serving.auth import KeyStore

keys_app = typer.Typer(
    help="API keys of the scoring service: create (shown once), list, revoke.",
    no_args_is_help=True,
)


def _store(project: Path) -> KeyStore:
    from lendml.serving.auth import KeyStore

    with open_project(project) as p:
        return KeyStore(p.resolve_path(p.config.serving.keys_file))


@keys_app.command("create")
@handle_errors
def create(
    scope: Annotated[
        str, typer.Option("--scope", help="score (scoring) or admin (also reload, shadow, canary).")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="A label, e.g. the client's name.")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Create a key and print it once: only its hash is stored."""
    token, key = _store(project).create(scope=scope, name=name)
    typer.echo(token)
    typer.echo(
        f"Created key {key.id} ({key.name}, scope {key.scope}). Store it now: it is not shown "
        "again. Send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@keys_app.command("list")
@handle_errors
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """List keys (ids, names, scopes, dates; never the keys themselves)."""
    keys = [k.describe() for k in _store(project).list_keys()]
    if as_json:
        typer.echo(json.dumps(keys, indent=2))
        return
    table = Table(title="API keys")
    for col in ("id", "name", "scope", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(k["id"], k["name"], k["scope"], k["created_at"], k["revoked_at"] or "")
    console.print(table)


@keys_app.command("revoke")
@handle_errors
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id (or its unique name).")],
    project: ProjectOpt = Path("."),
) -> None:
    """Revoke a key; a running service refuses it from its next request."""
    revoked = _store(project).revoke(key)
    typer.echo(f"Revoked key {revoked.id} ({revoked.name}) at {revoked.revoked_at}.")
