"""The one place that talks to MLflow's client: URIs, the client, and error translation.

Every :class:`~lendml.registry.Tracker` and :class:`~lendml.registry.Registry` holds its own
``MlflowClient`` bound to explicit tracking and registry URIs, so two of them pointing at
different backends in one process never share state (MLflow's fluent API keeps one global
tracking URI and one active run; lendml never uses it).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from lendml.errors import LendmlError, ModelNotFound, RegistryError

# MLflow draws a tqdm bar on stderr for every artifact download (each model load); a
# platform that loads models inside servers, loops and demos keeps stderr for its own
# messages. A user who sets the variable keeps their choice.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from lendml.core.config import TrackingSettings

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")
_SECRET_IN_URI = re.compile(r"(?P<head>//[^/:@]+):[^/@]+@")
_SERVERS = ("http://", "https://", "databricks")
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"


def has_scheme(value: str) -> bool:
    """Whether ``value`` is a URI (``s3://…``, ``mlflow-artifacts:/…``) rather than a path.

    One-letter schemes are Windows drive letters (``C:\\…``), so they count as paths.
    """
    return _SCHEME.match(value) is not None


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (safe to print in an error message)."""
    return _SECRET_IN_URI.sub(r"\g<head>:***@", uri)


def resolve_tracking_uri(uri: str, root: Path) -> str:
    """The tracking URI with a relative SQLite (or plain) path made absolute under ``root``.

    The database's folder is created, since SQLite does not create folders.
    """
    if uri.startswith("sqlite:///"):
        rest = uri[len("sqlite:///") :]
        path, sep, query = rest.partition("?")
        if not path or path == ":memory:":
            return uri
        db = Path(path) if path.startswith("/") else (root / path).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}{sep}{query}"
    if uri and not has_scheme(uri):
        return str((root / uri).resolve())
    return uri


def resolve_artifact_root(artifacts: str, root: Path, tracking_uri: str = "") -> str | None:
    """The artifact root as a URI, or ``None`` to let the tracking server choose.

    A path resolves under ``root`` — unless the tracking URI is a server (``http(s)://``,
    ``databricks``): a folder on this machine would be recorded on the server where other
    machines could not read it, so the server's own artifact store is used instead.
    """
    if not artifacts:
        return None
    if not has_scheme(artifacts) and tracking_uri.startswith(_SERVERS):
        log.info(
            "tracking.artifacts %r is a local folder but the tracking URI %r is a server; "
            "using the server's artifact store.",
            artifacts,
            redact(tracking_uri),
        )
        return None
    if has_scheme(artifacts):
        return artifacts
    folder = (root / artifacts).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_uri()


class Backend:
    """A lazily created ``MlflowClient`` bound to one tracking URI (also the registry URI).

    MLflow opens SQL databases (and runs their migrations) when a client is built, so the
    client is built on first use: constructing a Tracker or Registry never touches the
    backend, and a missing database driver or an unreachable database is reported as a
    :class:`RegistryError` by the first call that needs it.
    """

    def __init__(self, settings: TrackingSettings, root: Path) -> None:
        self.uri = resolve_tracking_uri(settings.uri, Path(root))
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            with backend_errors("open the tracking backend", self.uri):
                try:
                    self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                except ImportError as exc:
                    raise RegistryError(
                        f"The tracking URI {redact(self.uri)!r} needs the Python package "
                        f"{exc.name!r}, which is not installed. Install the database driver "
                        "(e.g. `pip install 'psycopg[binary]'` for PostgreSQL).",
                        tracking_uri=redact(self.uri),
                    ) from exc
        return self._client


def error_code(exc: BaseException) -> str | None:
    """MLflow's error code of ``exc`` (``RESOURCE_DOES_NOT_EXIST``, …), if it has one."""
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def _backend_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    errors: list[type[BaseException]] = [MlflowException, OSError]
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - MLflow without its SQL stores
        pass
    else:
        errors.append(SQLAlchemyError)
    return tuple(errors)


def raise_backend_error(exc: BaseException, action: str, uri: str) -> NoReturn:
    """Re-raise a backend failure as :class:`ModelNotFound` or :class:`RegistryError`."""
    detail = str(getattr(exc, "message", None) or exc).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    if error_code(exc) == NOT_FOUND:
        raise ModelNotFound(f"Could not {action}: {first}", tracking_uri=redact(uri)) from exc
    raise RegistryError(
        f"Could not {action} at tracking URI {redact(uri)!r}: {first}. Check that the "
        "tracking server or database is reachable and that `tracking:` in lendml.yaml "
        "(or LENDML_TRACKING_URI) points at it.",
        tracking_uri=redact(uri),
    ) from exc


@contextmanager
def backend_errors(action: str, uri: str) -> Iterator[None]:
    """Translate MLflow, database and network failures inside the block into lendml errors.

    ``action`` completes the sentence "Could not …" (e.g. ``"read run 'abc'"``).
    """
    try:
        yield
    except LendmlError:
        raise
    except _backend_errors() as exc:
        raise_backend_error(exc, action, uri)
