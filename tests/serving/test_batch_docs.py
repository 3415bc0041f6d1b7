"""docs/batch-scoring.md: its Python example runs and its options exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from lendml.cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "batch-scoring.md"


def test_the_python_example_runs(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/batch-scoring.md lost its example"
    exec(compile(blocks[0], str(DOC), "exec"), {"__name__": "docs_batch_scoring"})
    assert capsys.readouterr().out.strip() == (
        "3000 lleaves ['borrower_id', 'score', 'probability', 'reason_1']"
    )
    assert len(list(tmp_path.glob("*/compiled/*.lleaves"))) == 1


def test_every_documented_option_exists():
    documented = set(re.findall(r"^\| `(--[a-z-]+)", DOC.read_text(), flags=re.M))
    assert {"--model", "--input", "--output", "--reasons", "--keep"} <= documented
    res = CliRunner().invoke(app, ["score", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for option in documented:
        assert option in res.output, option
