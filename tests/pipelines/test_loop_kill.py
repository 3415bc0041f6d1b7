"""A loop pass killed at every step resumes to the same end state and never promotes twice.

Each case kills ``lendml loop run`` (a real process, ``os._exit`` from the fault hook) at
the worst moment of one step — its work done, its record not yet written — then runs the
same pass again and compares the end state with an uninterrupted pass on a copy of the
same project: the champion, the registered versions, the promotion history and the audit
trail's decisions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lendml.pipelines import loop_history
from lendml.pipelines.loop import CRASH_ENV, STEPS
from lendml.project import Project

AS_OF = "2024-07-01"


def _lendml(
    root: Path, crash_at: str | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lendml.cli.main",
            "loop",
            "run",
            "--as-of",
            AS_OF,
            "-p",
            str(root),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _end_state(root: Path) -> dict[str, Any]:
    with Project(root) as p:
        model = p.registry.get_model("credit_pd")
        history = p.registry.history("credit_pd")
        audit = loop_history(p)
    return {
        "champion": p.registry.resolve("credit_pd@champion").version if model else None,
        "versions": [v.version for v in model.versions],
        "promotions": [(e.alias, e.version, e.action, e.state) for e in history],
        "audit": [(e["step"], e["decision"]) for e in audit],
    }


@pytest.fixture(scope="module")
def reference(weak_champion_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("kill") / "reference"
    shutil.copytree(weak_champion_project, root)
    done = _lendml(root)
    assert done.returncode == 0, done.stdout + done.stderr
    state = _end_state(root)
    assert state["champion"] == 2 and state["audit"][-1] == ("end", "promoted")
    return state


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_a_step_the_pass_resumes_to_the_same_end(
    step: str, reference: dict, weak_champion_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    shutil.copytree(weak_champion_project, root)
    killed = _lendml(root, crash_at=step)
    assert killed.returncode == 137, killed.stdout + killed.stderr
    resumed = _lendml(root, None, "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = json.loads(resumed.stdout[resumed.stdout.index("{") :])
    assert result["status"] == "promoted"
    assert _end_state(root) == reference
    # the steps finished before the kill are read back, not redone; the killed one is redone
    assert result["reused"] == list(STEPS[: STEPS.index(step)])
