"""The code version and environment a run records (lendml, git, Python, key packages)."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lendml.registry import tags as T

log = logging.getLogger(__name__)

# Versions are read from package metadata: nothing here is imported (torch least of all).
KEY_PACKAGES: tuple[str, ...] = (
    "lightgbm",
    "mlflow",
    "numpy",
    "optuna",
    "pandas",
    "scikit-learn",
    "torch",
)
_GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class GitState:
    """The commit checked out in a git working tree and whether it has local changes."""

    commit: str
    dirty: bool


@dataclass(frozen=True)
class Environment:
    """What a run ran with: lendml, its git state, Python, platform and key packages."""

    lendml_version: str
    git: GitState | None
    python_version: str
    platform: str
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def code_version(self) -> str:
        """``<lendml version>`` plus ``+g<commit>`` (and ``.dirty``) inside a git checkout."""
        if self.git is None:
            return self.lendml_version
        dirty = ".dirty" if self.git.dirty else ""
        return f"{self.lendml_version}+g{self.git.commit[:12]}{dirty}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "code_version": self.code_version}

    def tags(self) -> dict[str, str]:
        """The run tags that record this environment."""
        out = {
            T.LENDML_VERSION_TAG: self.lendml_version,
            T.CODE_VERSION_TAG: self.code_version,
            T.PYTHON_VERSION_TAG: self.python_version,
            T.PLATFORM_TAG: self.platform,
        }
        if self.git is not None:
            out[T.GIT_COMMIT_TAG] = self.git.commit
            out[T.GIT_DIRTY_TAG] = "true" if self.git.dirty else "false"
            out["mlflow.source.git.commit"] = self.git.commit  # shown by MLflow's UI
        for name, version in self.packages.items():
            out[T.PACKAGE_TAG_PREFIX + name] = version
        return out


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_state(cwd: str | os.PathLike[str] | None = None) -> GitState | None:
    """The git commit and dirty flag of the repository holding ``cwd``, or ``None``.

    Fails soft: no git executable, not a repository, or a slow/broken git all give ``None``
    (logged at debug level), because a run must not fail for want of version control.
    """
    git = shutil.which("git")
    if git is None:
        return None
    where = Path(cwd) if cwd is not None else Path.cwd()
    try:
        # Fixed argument lists, no shell: nothing from the user reaches the command line.
        head = subprocess.run(  # noqa: S603
            [git, "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
        status = subprocess.run(  # noqa: S603
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("no git state for %s: %s", where, exc)
        return None
    if not head:
        return None
    return GitState(commit=head, dirty=bool(status.strip()))


def current_environment(cwd: str | os.PathLike[str] | None = None) -> Environment:
    """The environment of this process (git state of ``cwd``, default the working folder)."""
    try:
        version = importlib.metadata.version("lendml")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        version = "0+unknown"
    return Environment(
        lendml_version=version,
        git=git_state(cwd),
        python_version=platform.python_version(),
        platform=f"{platform.system()}-{platform.release()}-{platform.machine()}",
        packages=package_versions(),
    )


__all__ = ["KEY_PACKAGES", "Environment", "GitState", "current_environment", "git_state"]
