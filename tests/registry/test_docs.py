"""docs/registry.md: its Python example runs and its commands exist."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from lendml.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "registry.md"


def test_the_python_example_runs(capsys, monkeypatch, tmp_path, tracking_db_template):
    # Run it in tmp_path, on a copy of the migrated template database (seconds saved).
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    shutil.copyfile(tracking_db_template, tmp_path / "mlflow.db")
    monkeypatch.setenv("LENDML_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/registry.md lost its example"
    exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "docs_registry"})
    assert capsys.readouterr().out.strip() == "credit_pd/1 credit_v1"
    assert len(list((tmp_path / "tmp").glob("*/credit/data/mlartifacts/credit/*"))) == 1


def test_every_documented_command_exists():
    commands = set(re.findall(r"^lendml models (\w+)", DOC.read_text(), flags=re.M))
    assert commands >= {"register", "list", "show", "verify", "promote", "rollback", "history"}
    for command in commands:
        res = CliRunner().invoke(app, ["models", command, "--help"])
        assert res.exit_code == 0, (command, res.output)
