"""API keys (stored hashed, file mode 0600, revocation) and the `lendml keys` / `lendml serve`
commands, the latter as a real process on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lendml.cli.main import app
from lendml.errors import ConfigError, NotFoundError
from lendml.project import Project
from lendml.serving.auth import KeyStore
from tests.serving.online_world import (
    FEATURES,
    MODEL,
    fit_model,
    mlflow_template,  # noqa: F401 - fixture
    new_world,
)


def test_keys_are_random_stored_hashed_and_private(tmp_path):
    keys = KeyStore(tmp_path / "data" / "keys.json")
    a, key_a = keys.create(scope="score", name="web")
    b, _ = keys.create(scope="admin")
    assert a != b and a.startswith("lmk_") and len(a) > 40
    text = (tmp_path / "data" / "keys.json").read_text()
    assert a not in text and b not in text  # only hashes are stored
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "keys.json").st_mode) == 0o600
    assert keys.verify(a).id == key_a.id
    assert keys.verify(a).allows("score") and not keys.verify(a).allows("admin")
    assert keys.verify(b).allows("admin") and keys.verify(b).allows("score")
    for wrong in (None, "", a[:-1], a + "x", "lmk_" + "A" * 43):
        assert keys.verify(wrong) is None
    assert [k.name for k in keys.list_keys()] == ["web", keys.list_keys()[1].name]


def test_revoking_a_key_is_seen_by_another_process_view_of_the_file(tmp_path):
    path = tmp_path / "keys.json"
    server_view, admin_view = KeyStore(path), KeyStore(path)
    token, key = admin_view.create(scope="score", name="temp")
    assert server_view.verify(token) is not None
    revoked = admin_view.revoke(key.id)
    assert revoked.revoked_at is not None
    assert server_view.verify(token) is None
    assert admin_view.revoke(key.id).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(NotFoundError, match="No key with id or name 'nope'"):
        admin_view.revoke("nope")
    with pytest.raises(ConfigError, match="scope 'root'"):
        admin_view.create(scope="root")


def test_a_corrupt_keys_file_fails_closed(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="cannot be read"):
        KeyStore(path).verify("lmk_x")


def test_keys_commands_create_list_and_revoke(tmp_path):
    root = tmp_path / "proj"
    Project.init(root)
    runner = CliRunner()
    res = runner.invoke(
        app, ["keys", "create", "--scope", "admin", "--name", "ops", "-p", str(root)]
    )
    assert res.exit_code == 0, res.output
    token = res.stdout.splitlines()[0]
    assert token.startswith("lmk_")
    assert "not shown again" in res.stderr
    listed = runner.invoke(app, ["keys", "list", "--json", "-p", str(root)])
    assert listed.exit_code == 0
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "ops" and entry["scope"] == "admin" and entry["revoked_at"] is None
    assert token not in listed.stdout and "sha256" not in listed.stdout
    assert KeyStore(root / "data" / "api_keys.json").verify(token) is not None
    res = runner.invoke(app, ["keys", "revoke", entry["id"], "-p", str(root)])
    assert res.exit_code == 0 and "Revoked" in res.stdout
    assert KeyStore(root / "data" / "api_keys.json").verify(token) is None
    res = runner.invoke(app, ["keys", "create", "--scope", "owner", "-p", str(root)])
    assert res.exit_code == 2 and "scope 'owner'" in res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_lendml_serve_answers_scoring_requests(tmp_path, mlflow_template, workers):  # noqa: F811
    root = tmp_path / "proj"
    Project.init(root)
    world = new_world(root, mlflow_template)  # the project's registry and online store
    model = fit_model()
    # a model trained from a table: no feature service, every input comes with the request
    world.promote(world.register(model, lineage={}))
    world.store.close()
    config = (root / "lendml.yaml").read_text()
    (root / "lendml.yaml").write_text(
        config + f"serving:\n  model: {MODEL}\n  watch_interval: 0\n"
        "  models:\n    credit_pd:\n      decision: {approve_below: 0.35, decline_from: 0.65}\n"
    )
    token = CliRunner().invoke(app, ["keys", "create", "--scope", "score", "-p", str(root)])
    token = token.stdout.splitlines()[0]
    port = free_port()
    lendml = shutil.which("lendml", path=str(Path(sys.executable).parent))
    proc = subprocess.Popen(
        [lendml, "serve", "--project", str(root), "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        base = f"http://127.0.0.1:{port}"
        gate = threading.Event()
        for _ in range(1200):  # up to ~2 min on a loaded machine
            if proc.poll() is not None:
                break
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            gate.wait(0.1)
        assert proc.poll() is None, "".join(output)
        applicant = {"income": 52000, "dti": 0.61, "utilization": 0.9, "home": "rent"}
        body = {"entity": {"application_id": "A-1"}, "fields": {**applicant, "loan_to_income": 0.7}}
        auth = {"Authorization": f"Bearer {token}"}
        res = httpx.post(f"{base}/v1/score", json=body, headers=auth)
        assert res.status_code == 200, res.text
        got = res.json()
        import pandas as pd

        want = model.decision_function(pd.DataFrame([body["fields"]])[FEATURES])[0]
        assert got["score"] == pytest.approx(want, abs=1e-12)
        assert got["model"] == {"name": MODEL, "version": 1}
        assert httpx.post(f"{base}/v1/score", json=body).status_code == 401
        missing = {**body, "fields": {k: v for k, v in body["fields"].items() if k != "dti"}}
        res = httpx.post(f"{base}/v1/score", json=missing, headers=auth)
        assert res.status_code == 422 and res.json()["field"] == "fields.dti"
        for _ in range(20):  # every worker answers the same
            assert (
                httpx.post(f"{base}/v1/score", json=body, headers=auth).json()["score"]
                == got["score"]
            )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = "".join(output)
    assert "52000" not in log and token not in log
