"""docs/monitoring.md's dashboard example runs as written and shows what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
MARK = "<!-- tests/monitoring/test_docs.py runs this block -->"


def test_the_dashboard_example_runs(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    block = re.search(re.escape(MARK) + r"\s*```python\n(.*?)```", text, re.DOTALL)
    assert block, "the marked example is missing from docs/monitoring.md"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.group(1), str(DOC), "exec"), scope)  # the docs are ours
    report = scope["report"]
    promised = re.search(r"print\(report\.firing\)\s+# (\{.*\})", block.group(1)).group(1)
    assert str(report.firing) == promised
    assert {"dti", "score"} & set(report.alerts["variable"])
    windows = set(report.alerts.loc[report.alerts["rule"] == "psi", "window"])
    assert min(windows) >= "2026-01-14"  # nothing before the shift on the tenth day
    data = json.loads((tmp_path / "monitoring-report" / "monitoring.json").read_text())
    assert data["performance"]["reference_auc"] == 0.78
    assert (tmp_path / "monitoring-report" / "monitoring.html").is_file()
    assert "rule" in capsys.readouterr().out
