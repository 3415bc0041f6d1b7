"""docs/features.md in one file: init → define → apply → training set → materialize → online.

Run: python docs/examples/quickstart.py [FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lendml import Project


def main(folder: Path) -> pd.DataFrame:
    project = Project.init(folder / "fraud")  # writes lendml.yaml and the features.py example
    rng = np.random.default_rng(0)
    n = 2000
    tx = pd.DataFrame(
        {
            "CUSTOMER_ID": rng.integers(0, 50, n),
            "TX_DATETIME": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 40 * 86400, n), unit="s"),
            "TX_AMOUNT": rng.gamma(2.0, 60.0, n).round(2),
        }
    )
    tx.to_parquet(project.root / "data" / "transactions.parquet")

    print(project.apply())
    spine = pd.DataFrame(
        {
            "CUSTOMER_ID": [1, 2, 3],
            "as_of": pd.to_datetime(["2024-01-15", "2024-02-01", "2024-02-09"], utc=True),
        }
    )
    train = project.training_set("fraud_v1", spine).to_pandas()
    print(train)

    project.materialize(start="2024-02-01", end="2024-02-09")
    online = project.online_features("fraud_v1", {"CUSTOMER_ID": [3]}, as_of="2024-02-09")
    print(online)
    project.close()
    return train


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
