"""docs/serving.md: its configuration parses, its commands exist, its calls work as shown."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from lendml.cli.main import app
from lendml.core.config import ServingSettings
from lendml.serving.app import create_app
from lendml.serving.policy import ReasonMap, ServingPolicy
from tests.serving.online_world import (
    MODEL,
    REASON_MAP,
    Server,
    fit_model,
    mlflow_template,  # noqa: F401 - fixture
    new_world,
    write_json,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"
TEXT = DOC.read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, flags=re.S)


def test_the_documented_configuration_and_reason_map_are_valid():
    config, reason_map = (yaml.safe_load(b) for b in blocks("yaml"))
    settings = ServingSettings.model_validate(config["serving"])
    policy = settings.for_model("credit_pd")
    assert policy.decision.approve_below == 0.35 and policy.canary.percent == 10
    assert policy.missing.features == {"income": "reject", "utilization": 0.5}
    assert policy.decision.explore.percent == 2
    assert policy.decision.explore.keys == ("borrower_id",)
    assert ReasonMap.from_dict(reason_map) == ReasonMap.from_dict(REASON_MAP)


def test_every_documented_command_exists():
    commands = set(re.findall(r"^lendml (keys \w+|serve)", TEXT, flags=re.M))
    assert commands == {"keys create", "keys list", "keys revoke", "serve"}
    for command in commands:
        res = CliRunner().invoke(app, [*command.split(), "--help"])
        assert res.exit_code == 0, (command, res.output)


def curl_calls() -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of every curl example."""
    calls = []
    for block in blocks("bash"):
        for command in re.findall(r"^curl .*?(?<!\\)$", block, flags=re.S | re.M):
            args = shlex.split(command.replace("\\\n", " "))
            method = args[args.index("-X") + 1] if "-X" in args else "POST"
            url = next(a for a in args if a.startswith("http://"))
            body = json.loads(args[args.index("-d") + 1]) if "-d" in args else None
            calls.append((method, url.removeprefix("http://127.0.0.1:8000"), body))
    return calls


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_template):  # noqa: F811 - the imported fixture
    world = new_world(tmp_path_factory.mktemp("docs"), mlflow_template)
    write_json(world.root / "reasons.json", REASON_MAP)
    world.promote(world.register(fit_model()))
    world.promote(world.register(fit_model(seed=12)), alias="challenger")
    policy = yaml.safe_load(blocks("yaml")[0])["serving"]["models"][MODEL]
    policy["reasons"]["map"] = "reasons.json"
    del policy["missing"], policy["ranges"]  # the test world's borrowers are all scored
    settings = ServingSettings.model_validate(
        {"model": MODEL, "watch_interval": 0, "models": {MODEL: policy}}
    )
    ServingPolicy.from_settings(settings.for_model(MODEL), root=world.root)
    manager = world.manager(settings)
    manager.start(watch=False)
    keys = world.keys()
    score_key, _ = keys.create(scope="score")
    admin_key, _ = keys.create(scope="admin")
    with Server(create_app(manager, keys=keys, sink=world.sink)) as base:
        yield base, score_key, admin_key
    manager.close()
    world.store.close()


def test_the_curl_examples_answer_as_documented(server):
    base, score_key, admin_key = server
    documented = json.loads(blocks("json")[0])
    calls = curl_calls()
    assert [(m, p) for m, p, _ in calls] == [
        ("POST", "/v1/score"),
        ("POST", "/v1/admin/reload"),
        ("PUT", "/v1/admin/models/credit_pd/traffic"),
    ]
    method, path, body = calls[0]
    res = httpx.request(
        method, base + path, json=body, headers={"Authorization": f"Bearer {score_key}"}
    )
    assert res.status_code == 200, res.text
    got = res.json()
    assert set(got) == set(documented)
    assert got["model"]["name"] == documented["model"]["name"]
    for reason in got["reasons"]:
        assert set(reason) == set(documented["reasons"][0])
        assert reason["code"] in {"R10", "R20", "R30", "R40"}
    for method, path, body in calls[1:]:
        res = httpx.request(
            method, base + path, json=body, headers={"Authorization": f"Bearer {admin_key}"}
        )
        assert res.status_code == 200, res.text
    assert res.json()["shadow"]["version"] == 2 and res.json()["canary"]["percent"] == 10


def test_the_python_example_runs(server, monkeypatch, capsys):
    base, score_key, _ = server
    monkeypatch.setenv("LENDML_API_KEY", score_key)
    example = blocks("python")[0].replace("http://127.0.0.1:8000", base)
    exec(compile(example, str(DOC), "exec"), {"__name__": "docs_serving"})
    first, second = capsys.readouterr().out.strip().splitlines()
    assert first.split()[0] in {"approve", "refer", "decline"}
    assert all(d in {"approve", "refer", "decline"} for d in eval(second))  # a printed list


def test_the_embedding_example_compiles():
    compile(blocks("python")[1], str(DOC), "exec")
