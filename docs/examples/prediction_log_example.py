"""docs/prediction-log.md, worked through: log decisions, read them back for monitoring,
erase one applicant. Run it with ``python docs/examples/prediction_log_example.py``."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lendml.core.config import ParquetLogSettings
from lendml.serving.prediction_log import (
    erase_prediction_log,
    open_prediction_log,
    read_prediction_log,
)
from lendml.serving.records import PredictionRecord


def main(root: Path) -> dict[str, Any]:
    settings = ParquetLogSettings(retention_days=730)  # what `prediction_log:` in lendml.yaml holds
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    # 1. The service submits one record per response; the writer thread does the rest.
    with open_prediction_log(settings, root) as plog:
        for i in range(6):
            declined = i % 3 == 0
            plog.submit(
                PredictionRecord(
                    request_id=f"req-{i}",
                    time=start + timedelta(minutes=i),
                    model="credit_pd",
                    version=3,
                    entity={"customer_id": 40 + i % 4},
                    features={"dti": 0.2 + i / 10, "utilization": 0.5, "grade": "BC"[i % 2]},
                    score=640.0 - 20 * i,
                    probability=0.05 * (i + 1),
                    decision="decline" if declined else "approve",
                    reasons=[{"code": "R01", "text": "Debt-to-income ratio too high"}]
                    if declined
                    else [],
                )
            )
    # (closing the log wrote everything it had accepted)

    # 2. Monitoring reads it back: one row per record, one column per feature.
    frame = read_prediction_log(settings, root, start="2026-11-02", model="credit_pd")
    drift_columns = [c for c in frame.columns if c.startswith("features.")]
    declines = int((frame["decision"] == "decline").sum())

    # 3. An applicant asks to be forgotten: `lendml log erase customer_id=40` does the same.
    report = erase_prediction_log(settings, root, "customer_id", 40)
    after = read_prediction_log(settings, root)
    return {
        "logged": len(frame),
        "drift_columns": drift_columns,
        "declines": declines,
        "erased": report.total,
        "after_erase": len(after),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(main(Path(tmp)))
