"""What every CLI module shares: consoles, the ``--project`` option, error printing."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from lendml.errors import LendmlError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="The project folder (default: current folder).")
]


def handle_errors(fn: F) -> F:
    """Print lendml errors without a traceback and exit non-zero."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LendmlError as exc:
            err_console.print(
                f"[bold red]error:[/] {type(exc).__name__}: {exc.message}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def open_project(path: Path, engine: str | None = None) -> Any:
    """The :class:`~lendml.project.Project` at ``path``."""
    from lendml.project import Project

    return Project(path, engine=engine)
