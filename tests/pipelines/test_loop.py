"""The loop pass through its public API and CLI, on a small synthetic world."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lendml.cli.main import app
from lendml.errors import ConfigError, LoopBusy
from lendml.pipelines import loop_history, run_pass
from lendml.pipelines.state import LoopState
from lendml.project import Project
from tests.pipelines.conftest import set_loop

AS_OF = "2024-07-01"


def _versions(project: Project) -> list[int]:
    return [v.version for v in project.registry.get_model("credit_pd").versions]


def test_a_pass_retrains_gates_and_promotes_with_its_evidence(loop_project: Path) -> None:
    with Project(loop_project) as p:
        result = run_pass(p, as_of=AS_OF)
        assert result.status == "promoted", result.summary
        assert list(result.steps) == [
            "start",
            "refresh",
            "dataset",
            "triggers",
            "train",
            "evaluate",
            "gate",
            "register",
            "promote",
        ]
        assert result.steps["triggers"]["fired"] == ["schedule"]
        gate = result.steps["gate"]
        checks = {c["name"]: c for c in gate["checks"]}
        assert checks["better"]["passed"] and checks["non_inferior"]["passed"]
        assert gate["comparison"]["auc_challenger"] > gate["comparison"]["auc_champion"]
        assert checks["better"]["value"]["p_superiority"] < 0.05
        new = result.steps["register"]["version"]
        assert p.registry.resolve("credit_pd@champion").version == new == 2
        events = p.registry.history("credit_pd")
        assert events[-1].version == 2 and "loop pass" in events[-1].reason
        # the newest window ends at the newest application whose label is known at as-of
        windows = result.steps["dataset"]["windows"]
        assert windows["test_until"] < "2024-04-01T00:00:00" < AS_OF
        steps = [e["step"] for e in loop_history(p) if e["pass_id"] == result.pass_id]
        assert steps == [*result.steps, "end"]


def test_running_a_finished_pass_again_redoes_nothing(loop_project: Path) -> None:
    with Project(loop_project) as p:
        first = run_pass(p, as_of=AS_OF)
        runs = len(p.tracker.search_runs())
        again = run_pass(p, as_of=AS_OF)
        assert again.status == first.status == "promoted"
        assert again.reused == list(first.steps)
        assert len(p.tracker.search_runs()) == runs
        assert _versions(p) == [1, 2]
        assert len(p.registry.history("credit_pd")) == 2  # first promotion + the loop's
        assert len(loop_history(p)) == len(first.steps) + 1


def test_no_trigger_means_no_training(loop_project: Path) -> None:
    set_loop(loop_project, triggers={"schedule": "3650d"})
    with Project(loop_project) as p:
        runs = len(p.tracker.search_runs())
        result = run_pass(p, as_of=AS_OF)
        assert result.status == "no_trigger"
        assert "train" not in result.steps
        assert len(p.tracker.search_runs()) == runs
        entry = [e for e in loop_history(p) if e["step"] == "triggers"][-1]
        assert entry["decision"] == "quiet"
        schedule = entry["evidence"]["triggers"][0]
        assert schedule["trigger"] == "schedule" and schedule["fired"] is False
        assert schedule["threshold_days"] == 3650


def test_a_challenger_that_is_not_better_is_rejected_and_the_gate_says_why(
    loop_project: Path,
) -> None:
    # the same weak config as the champion: not better by DeLong, no drift/decay trigger
    (loop_project / "train.yaml").write_text((loop_project / "champion.yaml").read_text())
    with Project(loop_project) as p:
        result = run_pass(p, as_of=AS_OF)
        assert result.status == "rejected"
        assert "not better by DeLong" in result.summary
        assert "register" not in result.steps
        assert p.registry.resolve("credit_pd@champion").version == 1
        end = loop_history(p)[-1]
        assert end["step"] == "end" and end["decision"] == "rejected"


def test_shadow_period_then_promotion_on_a_later_pass(loop_project: Path) -> None:
    set_loop(loop_project, shadow="14d")
    with Project(loop_project) as p:
        first = run_pass(p, as_of=AS_OF)
        assert first.status == "shadow"
        assert p.registry.resolve("credit_pd@champion").version == 1
        assert p.registry.resolve("credit_pd@shadow").version == 2
        early = run_pass(p, as_of="2024-07-10")  # shadow period not over: no new challenger
        assert early.status == "shadow_pending" and "train" not in early.steps
        assert p.registry.resolve("credit_pd@champion").version == 1
        later = run_pass(p, as_of="2024-07-16")
        assert later.status == "promoted"
        assert "shadow period" in later.summary
        assert p.registry.resolve("credit_pd@champion").version == 2
        assert _versions(p) == [1, 2]
        assert p.registry.resolve("credit_pd@champion").version == 2


def test_without_a_champion_the_loop_says_what_to_do(tmp_path: Path, loop_project: Path) -> None:
    set_loop(loop_project, model="credit_other")
    with Project(loop_project) as p, pytest.raises(ConfigError, match="has no champion"):
        run_pass(p, as_of=AS_OF)
    with Project(loop_project) as p:
        failed = loop_history(p)[-1]
    assert failed["step"] == "failed" and "has no champion" in failed["summary"]


def _hold_lock(root: str, ready: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with LoopState(root).lock():
        ready.set()
        release.wait(30)


def test_one_pass_at_a_time_and_a_dead_holder_frees_the_lock(loop_project: Path) -> None:
    state_dir = str(loop_project / "data" / "loop")
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(state_dir, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with Project(loop_project) as p, pytest.raises(LoopBusy, match="Another loop pass"):
            run_pass(p, as_of=AS_OF)
        out = CliRunner().invoke(app, ["loop", "run", "--as-of", AS_OF, "-p", str(loop_project)])
        assert out.exit_code == 2 and "LoopBusy" in out.output
    finally:
        holder.kill()  # dies holding the lock: the kernel releases it
        holder.join(30)
    with LoopState(state_dir).lock():
        pass


def test_cli_run_and_history(loop_project: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["loop", "run", "--as-of", AS_OF, "--json", "-p", str(loop_project)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output[out.output.index("{") :])
    assert data["status"] == "promoted" and data["steps"]["gate"]["passed"] is True
    hist = runner.invoke(app, ["loop", "history", "--json", "-p", str(loop_project)])
    assert hist.exit_code == 0
    lines = [json.loads(x) for x in hist.output.splitlines() if x.startswith("{")]
    assert [x["step"] for x in lines][-2:] == ["promote", "end"]
    assert lines[-1]["decision"] == "promoted"
    table = runner.invoke(app, ["loop", "history", "-p", str(loop_project)])
    assert table.exit_code == 0 and "promoted" in table.output


def test_daemon_runs_passes_until_its_limit(loop_project: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["loop", "daemon", "--every", "1s", "--max-passes", "2", "-p", str(loop_project)],
    )
    assert out.exit_code == 0, out.output
    with Project(loop_project) as p:
        ends = [e for e in loop_history(p) if e["step"] == "end"]
        # both passes fall on the same day (as-of floored to loop.every = 1d): the second
        # reads the first back and promotes nothing more
        assert len(ends) == 1 and ends[0]["decision"] == "promoted"
        assert [v.version for v in p.registry.get_model("credit_pd").versions] == [1, 2]
    assert out.output.count("finished steps read back") == 1


def test_replay_runs_one_pass_per_period_and_refuses_a_backward_range(loop_project: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "loop", "replay", "--start", "2024-06-01", "--end", "2024-07-01",
            "--every", "15d", "--json", "-p", str(loop_project),
        ],
    )
    assert out.exit_code == 0, out.output
    passes = json.loads(out.output[out.output.index("[") :])
    assert [p["as_of"][:10] for p in passes] == ["2024-06-01", "2024-06-16", "2024-07-01"]
    assert passes[0]["status"] == "promoted"  # the weak champion is replaced once
    assert all(p["status"] in ("no_trigger", "rejected", "promoted") for p in passes[1:])
    bad = runner.invoke(
        app,
        ["loop", "replay", "--start", "2024-07-01", "--end", "2024-06-01", "-p", str(loop_project)],
    )
    assert bad.exit_code == 2 and "before start" in bad.output
