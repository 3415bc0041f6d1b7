"""docs/continuous-learning.md: its Python example runs and its settings are valid."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lendml.core.config import ProjectConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "continuous-learning.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_loop_settings_block_is_valid_config() -> None:
    blocks = [b for b in _blocks("yaml") if b.startswith("loop:")]
    assert len(blocks) >= 2
    for block in blocks:
        config = ProjectConfig.model_validate(yaml.safe_load(block))
        assert config.loop is not None
    gate = ProjectConfig.model_validate(yaml.safe_load(blocks[1])).loop.gate
    assert gate.margin == 0.01 and gate.calibration == (0.8, 1.25)


def test_the_python_example_runs_on_a_project(loop_project: Path, capsys) -> None:
    (code,) = _blocks("python")
    code = code.replace('"my_project"', repr(str(loop_project))).replace(
        '"2024-12-01"', '"2024-07-01"'
    )
    exec(compile(code, str(DOC), "exec"), {})  # the doc's own example
    out = capsys.readouterr().out
    assert out.startswith("promoted ")
    assert "'name': 'non_inferior'" in out
