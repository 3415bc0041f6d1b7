"""Layer contracts, public API and dependency pins."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import lendml

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    res = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken" in res.stdout


def test_public_api_is_sorted_and_importable():
    assert lendml.__all__ == sorted(lendml.__all__)
    for name in lendml.__all__:
        assert hasattr(lendml, name), name


def test_ibis_can_create_tables_on_duckdb():
    """Catches a sqlglot upgrade that breaks ibis' DuckDB create_table (seen with 30.30)."""
    import ibis
    import pandas as pd

    con = ibis.duckdb.connect()
    t = con.create_table("t", pd.DataFrame({"a": [1, 2]}))
    con.create_table("t", pd.DataFrame({"a": [3]}), overwrite=True)
    assert con.table("t").count().execute() == 1
    assert t is not None
