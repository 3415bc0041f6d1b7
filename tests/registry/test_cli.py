"""``lendml models …`` through the CLI, against a project's tracking settings."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from lendml import Project
from lendml.cli.main import app
from lendml.registry import Tracker

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory, tracking_db_template):
    root = tmp_path_factory.mktemp("cli") / "credit"
    p = Project.init(root)
    shutil.copyfile(tracking_db_template, root / "data" / "mlflow.db")
    return p


@pytest.fixture(scope="module")
def runs(project, tiny_model) -> list[str]:
    """Two finished runs that each logged the tiny model, in the project's tracking."""
    tracker = Tracker(project.config.tracking, root=project.root, default_experiment="credit")
    ids = []
    for _ in range(2):
        with tracker.start_run(tags={"lendml.feature_service": "credit_v1"}) as run:
            run.log_model(tiny_model)
        ids.append(run.run_id)
    return ids


def invoke(project, *args: str):
    return runner.invoke(app, ["models", *args, "--project", str(project.root)])


def ok_json(project, *args: str):
    res = invoke(project, *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_register_list_show_promote_rollback_history(project, runs):
    res = invoke(project, "register", runs[0], "--name", "credit_pd")
    assert res.exit_code == 0, res.output
    assert "Registered credit_pd version 1" in res.stdout
    assert "lendml.feature_service = credit_v1" in res.stdout
    v2 = ok_json(project, "register", runs[1], "--name", "credit_pd")
    assert (v2["version"], v2["run_id"]) == (2, runs[1])

    listed = ok_json(project, "list")
    assert [(m["name"], m["versions"], m["latest_version"]) for m in listed] == [
        ("credit_pd", [1, 2], 2)
    ]
    res = invoke(project, "list")
    assert res.exit_code == 0 and "credit_pd" in res.stdout

    res = invoke(project, "promote", "credit_pd", "1", "--reason", "first model", "--user", "ana")
    assert res.exit_code == 0, res.output
    assert "Promoted credit_pd/1 to champion (was unset) by ana" in res.stdout
    event = ok_json(project, "promote", "credit_pd", "2", "--reason", "beats v1", "--user", "ben")
    assert (event["version"], event["previous_version"], event["user"]) == (2, 1, "ben")

    shown = ok_json(project, "show", "credit_pd@champion")
    assert shown["version"] == 2 and shown["aliases"] == ["champion"]
    assert shown["lineage"]["lendml.feature_service"] == "credit_v1"
    model = ok_json(project, "show", "credit_pd")
    assert model["aliases"] == {"champion": 2}
    assert [v["version"] for v in model["versions"]] == [1, 2]
    res = invoke(project, "show", "credit_pd/1")
    assert res.exit_code == 0 and shown["manifest_sha256"][:12] in res.stdout

    res = invoke(project, "rollback", "credit_pd", "--reason", "v2 drifts", "--user", "cleo")
    assert res.exit_code == 0, res.output
    assert "Rolled back credit_pd/1 to champion (was version 2) by cleo" in res.stdout

    history = ok_json(project, "history", "credit_pd", "--alias", "champion")
    assert [(h["action"], h["version"], h["previous_version"], h["user"]) for h in history] == [
        ("promote", 1, None, "ana"),
        ("promote", 2, 1, "ben"),
        ("rollback", 1, 2, "cleo"),
    ]
    assert history[-1]["reason"] == "v2 drifts"
    res = invoke(project, "history", "credit_pd")
    assert res.exit_code == 0 and "rollback" in res.stdout and "cleo" in res.stdout

    res = invoke(project, "verify", "credit_pd@champion")
    assert res.exit_code == 0 and "every file matches" in res.stdout


def test_errors_are_printed_without_a_traceback(project, runs):
    # Its own model: test workers may run this module's tests apart from each other.
    invoke(project, "register", runs[0], "--name", "errs")
    cases = [
        (("show", "nope@champion"), "ModelNotFound: No registered model 'nope'"),
        (("promote", "errs", "1", "--alias", "prod", "--reason", "x"), "use one of"),
        (("promote", "errs", "99", "--reason", "x"), "has no version 99"),
        (("register", "f00d", "--name", "x"), "No run with id 'f00d'"),
    ]
    for args, message in cases:
        res = invoke(project, *args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output

    invoke(project, "register", runs[0], "--name", "fresh")
    res = invoke(project, "rollback", "fresh", "--reason", "nothing yet")
    assert res.exit_code == 2 and "no previous holder" in res.output


def test_commands_need_a_project(tmp_path):
    res = runner.invoke(app, ["models", "list", "--project", str(tmp_path)])
    assert res.exit_code == 2
    assert "No lendml.yaml" in res.output
