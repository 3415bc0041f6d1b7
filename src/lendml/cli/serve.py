"""``lendml serve``: the online scoring service of a project, on uvicorn.

Wires the project's registry, online store, feature definitions, API keys and prediction
log into :func:`lendml.serving.app.create_app`; the logic lives in :mod:`lendml.serving`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
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


_PROJECT_ENV = "LENDML_SERVE_PROJECT"
_WATCH_ENV = "LENDML_SERVE_WATCH"


def _service(p: Any, settings: Any, *, watch: bool) -> tuple[Any, Any, Any]:
    """The started manager, the app and the prediction log of project ``p``."""
    from lendml.serving.app import create_app
    from lendml.serving.auth import KeyStore
    from lendml.serving.lifecycle import ModelManager

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
        manager.start(watch=watch)
    except BaseException:
        manager.close()
        if sink is not None:
            sink.close(timeout=30)
        raise

    def shutdown() -> None:
        manager.close()
        if sink is not None:
            sink.close(timeout=30)

    keys = KeyStore(p.resolve_path(settings.keys_file))
    app = create_app(manager, keys=keys, sink=sink, settings=settings, on_shutdown=shutdown)
    return app, manager, shutdown


def worker_app() -> Any:
    """The app of one worker process of ``lendml serve --workers N`` (uvicorn's factory).

    Each worker opens the project, the online store and its own prediction-log writer,
    deploys the champions and follows the registry on its own.
    """
    p = open_project(Path(os.environ[_PROJECT_ENV]))
    app, _, _ = _service(p, p.config.serving, watch=os.environ.get(_WATCH_ENV) == "1")
    return app


@handle_errors
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str | None, typer.Option("--host", help="Default: serving.host.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default: serving.port.")] = None,
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", help="Follow the registry for new champions.")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Server processes (one core each; each loads the models)."
        ),
    ] = 1,
) -> None:
    """Serve the champion over HTTP: POST /v1/score, /v1/score:batch (docs/serving.md)."""
    import uvicorn

    from lendml.serving.auth import KeyStore

    with open_project(project) as p:
        settings = p.config.serving
        host = host or settings.host
        port = port or settings.port
        if not any(k.active for k in KeyStore(p.resolve_path(settings.keys_file)).list_keys()):
            console.print(
                "[yellow]No API key yet:[/] every request will be refused. Create one with "
                "[bold]lendml keys create --scope score[/]."
            )
        with console.status("Loading, verifying and warming up the served models…"):
            app, manager, shutdown = _service(p, settings, watch=watch and workers == 1)
        for name, routing in manager.status()["models"].items():
            console.print(f"Serving {name}: {routing}")
        console.print(
            f"Listening on http://{host}:{port} with {workers} process(es) (Ctrl-C stops)"
        )
        if workers == 1:
            try:
                uvicorn.run(app, host=host, port=port, log_level="info")
            finally:
                shutdown()
            return
        shutdown()  # checked that the models deploy; each worker deploys its own
        os.environ[_PROJECT_ENV] = str(p.root)
        os.environ[_WATCH_ENV] = "1" if watch else "0"
        uvicorn.run(
            "lendml.cli.serve:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
        )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""
    app.command("serve")(serve)


__all__ = ["register", "serve", "worker_app"]
