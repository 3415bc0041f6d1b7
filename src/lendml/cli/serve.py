"""``lendml serve``: the online scoring service of a project, on uvicorn.

Wires the project's registry, online store, feature definitions, API keys and prediction
log into :func:`lendml.serving.app.create_app`; the logic lives in :mod:`lendml.serving`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from lendml.cli.common import ProjectOpt, console, handle_errors, open_project

log = logging.getLogger(__name__)


def _prediction_log(project: Any) -> Any:
    """The project's prediction log, or None where this lendml has none."""
    if importlib.util.find_spec("lendml.serving.prediction_log") is None:
        return None
    from lendml.serving.prediction_log import open_prediction_log

    return open_prediction_log(project.config.prediction_log, project.root)


@handle_errors
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str | None, typer.Option("--host", help="Default: serving.host.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: serving.port.")] = None,
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", help="Follow the registry for new champions.")
    ] = True,
) -> None:
    """Serve the champion over HTTP: POST /v1/score, /v1/score:batch (docs/serving.md)."""
    import uvicorn

    from lendml.serving.app import create_app
    from lendml.serving.auth import KeyStore
    from lendml.serving.lifecycle import ModelManager

    with open_project(project) as p:
        settings = p.config.serving
        updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        if updates:
            settings = settings.model_copy(update=updates)
        keys = KeyStore(p.resolve_path(settings.keys_file))
        if not any(k.active for k in keys.list_keys()):
            console.print(
                "[yellow]No API key yet:[/] every request will be refused. Create one with "
                "[bold]lendml keys create --scope score[/]."
            )
        sink = _prediction_log(p)
        manager = ModelManager(
            p.registry,
            settings=settings,
            services=p.get_feature_service,
            store=p.online_store,
            root=p.root,
            sink=sink,
        )
        try:
            with console.status("Loading, verifying and warming up the served models…"):
                manager.start(watch=watch)
            for name, routing in manager.status()["models"].items():
                console.print(f"Serving {name}: {routing}")
            app = create_app(manager, keys=keys, sink=sink, settings=settings)
            console.print(f"Listening on http://{settings.host}:{settings.port} (Ctrl-C stops)")
            uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
        finally:
            manager.close()
            if sink is not None:
                sink.close(timeout=30)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)


__all__ = ["register", "serve"]
