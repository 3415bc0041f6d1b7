"""The prediction log: Parquet files (rotation, atomic files, layout), erasure and pruning
as properties, the writer's resilience, the settings, the public API and the docs.

What every store shares (round trip, outages, crash replay, erasure, retention, CLI) is in
``test_prediction_log_contract.py``.
"""

from __future__ import annotations

import doctest
import logging
import math
import os
import runpy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import lendml.serving.prediction_log as prediction_log_module
from lendml.core.config import ParquetLogSettings, PostgresLogSettings, ProjectConfig
from lendml.errors import ConfigError, StoreError
from lendml.serving._predlog_base import encode, rows_to_table
from lendml.serving._predlog_spool import Spool
from lendml.serving.prediction_log import (
    ParquetLogStore,
    PredictionLog,
    open_prediction_log,
    read_prediction_log,
)
from tests.serving.prediction_log_support import T0, GatedStore, record, wait_for

ROOT = Path(__file__).resolve().parents[2]


def parquet_settings(**overrides) -> ParquetLogSettings:
    fields = {
        "rotate_rows": 100,
        "rotate_seconds": 3600,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.2,
    }
    return ParquetLogSettings(**{**fields, **overrides})


def parts(root: Path) -> list[Path]:
    """The log's finished files (a file being written has a temporary name)."""
    return sorted((root / "data" / "prediction_log").glob("date=*/part-*.parquet"))


# ---------------------------------------------------------------------------- files


def test_files_rotate_by_rows(tmp_path):
    with open_prediction_log(parquet_settings(rotate_rows=100), tmp_path) as plog:
        for i in range(1000):
            plog.submit(record(i))
    files = parts(tmp_path)
    assert len(files) == 10
    assert [pq.read_metadata(f).num_rows for f in files] == [100] * 10
    assert all(f.parent.name == "date=2026-11-02" for f in files)
    assert all(f.name.startswith("part-") and f.suffix == ".parquet" for f in files)


def test_files_rotate_by_seconds_without_a_flush(tmp_path):
    plog = open_prediction_log(parquet_settings(rotate_rows=10**6, rotate_seconds=0.2), tmp_path)

    def rows() -> int:
        return sum(pq.read_metadata(f).num_rows for f in parts(tmp_path))

    for i in range(5):
        plog.submit(record(i))
    # rotate_rows is out of reach: only the clock writes these (on a busy machine the
    # five may land in more than one file)
    wait_for(lambda: rows() == 5, "the records written after rotate_seconds")
    first = len(parts(tmp_path))
    for i in range(5, 8):
        plog.submit(record(i))
    wait_for(lambda: rows() == 8, "the next records")
    assert len(parts(tmp_path)) > first  # a new file: written files are never appended to
    plog.close()


def test_a_batch_across_midnight_is_split_by_date(tmp_path):
    midnight = datetime(2026, 11, 3, tzinfo=UTC)
    with open_prediction_log(parquet_settings(), tmp_path) as plog:
        for i in range(-3, 3):
            plog.submit(record(i + 3, time=midnight + timedelta(seconds=i)))
    assert [(f.parent.name, pq.read_metadata(f).num_rows) for f in parts(tmp_path)] == [
        ("date=2026-11-02", 3),
        ("date=2026-11-03", 3),
    ]
    got = read_prediction_log(parquet_settings(), tmp_path, start="2026-11-03")
    assert len(got) == 3


def test_files_are_whole_and_readers_skip_temporaries_and_strangers(tmp_path):
    with open_prediction_log(parquet_settings(), tmp_path) as plog:
        for i in range(150):
            plog.submit(record(i))
    folder = tmp_path / "data" / "prediction_log" / "date=2026-11-02"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries left
    # What a crash mid-write leaves, and files that are not the log's: all ignored.
    (folder / ".part-x.parquet.1234abcd.tmp").write_bytes(b"PAR1 half a file")
    (folder / "notes.txt").write_text("hello")
    (tmp_path / "data" / "prediction_log" / "date=garbage").mkdir()
    assert len(read_prediction_log(parquet_settings(), tmp_path)) == 150


def test_a_path_that_is_a_file_cannot_be_read(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prediction_log").write_text("oops")
    with pytest.raises(StoreError, match="is not a folder"):
        read_prediction_log(parquet_settings(), tmp_path)


def test_erase_rewrites_only_the_files_that_hold_the_entity(tmp_path):
    with open_prediction_log(parquet_settings(rotate_rows=10), tmp_path) as plog:
        for i in range(30):  # three files of ten
            entity = {"customer_id": "solo"} if i == 25 else {"customer_id": i % 10}
            entity = {"customer_id": "only-here"} if i < 10 else entity
            plog.submit(record(i, entity=entity))
    before = {f.name: f.stat().st_ino for f in parts(tmp_path)}
    assert len(before) == 3

    report = prediction_log_module.erase_prediction_log(
        parquet_settings(), tmp_path, "customer_id", "only-here"
    )
    assert (report.store, report.spool) == (10, 0)
    after = {f.name: f.stat().st_ino for f in parts(tmp_path)}
    assert len(after) == 2  # the file that held only that entity is gone
    assert all(after[name] == before[name] for name in after)  # the others untouched

    report = prediction_log_module.erase_prediction_log(
        parquet_settings(), tmp_path, "customer_id", "solo"
    )
    assert report.total == 1
    changed = [
        n
        for n, ino in {f.name: f.stat().st_ino for f in parts(tmp_path)}.items()
        if after[n] != ino
    ]
    assert len(changed) == 1  # rewritten under a new inode: a rename, not an edit in place
    assert len(read_prediction_log(parquet_settings(), tmp_path)) == 19


# ---------------------------------------------------------------------------- properties

ENTITY_VALUES = st.one_of(st.integers(-3, 3), st.sampled_from(["1", "2", "x", "ü", "a b", ""]))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entities=st.lists(ENTITY_VALUES, min_size=0, max_size=30),
    spooled=st.integers(0, 30),
    target=ENTITY_VALUES,
    chunk=st.integers(3, 15),
)
def test_erase_removes_exactly_the_matching_records(
    tmp_path_factory, entities, spooled, target, chunk
):
    root = tmp_path_factory.mktemp("erase")
    store, spool = ParquetLogStore(root / "log"), Spool(root / "spool")
    records = [record(i, entity={"customer_id": v, "other": 1}) for i, v in enumerate(entities)]
    spooled = min(spooled, len(records))
    for k in range(0, spooled, chunk):
        batch = rows_to_table([encode(r) for r in records[k : min(k + chunk, spooled)]])
        spool.write(batch, batch_id=f"s{k:04d}")
    for k in range(spooled, len(records), chunk):
        batch = rows_to_table([encode(r) for r in records[k : k + chunk]])
        store.write_batch(batch, batch_id=f"b{k:04d}")
    plog = PredictionLog(store, spool.folder, start=False)

    def matches(v) -> bool:  # the documented rule: compare by text (42 matches "42")
        return str(v) == str(target)

    report = plog.erase("customer_id", target)
    want_store = [r for r in records[spooled:] if not matches(r.entity["customer_id"])]
    want_spool = [r for r in records[:spooled] if not matches(r.entity["customer_id"])]
    assert report.store == len(records) - spooled - len(want_store)
    assert report.spool == spooled - len(want_spool)
    assert store.read()["request_id"].to_pylist() == [r.request_id for r in want_store]
    left = [rid for p in spool.files() for rid in spool.read(p)["request_id"].to_pylist()]
    assert left == [r.request_id for r in want_spool]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offsets=st.lists(st.integers(0, 5 * 86400), min_size=0, max_size=40),
    cutoff=st.integers(-86400, 6 * 86400),
)
def test_prune_removes_exactly_the_older_records(tmp_path_factory, offsets, cutoff):
    root = tmp_path_factory.mktemp("prune")
    store = ParquetLogStore(root / "log")
    records = [record(i, time=T0 + timedelta(seconds=s)) for i, s in enumerate(offsets)]
    for k in range(0, len(records), 7):
        store.write_batch(
            rows_to_table([encode(r) for r in records[k : k + 7]]), batch_id=f"b{k:04d}"
        )
    before = T0 + timedelta(seconds=cutoff)
    removed = store.prune(before)
    kept = [r for r in records if r.time >= before]
    assert removed == len(records) - len(kept)
    assert sorted(store.read()["request_id"].to_pylist()) == sorted(r.request_id for r in kept)


# ---------------------------------------------------------------------------- the writer


class FlakyStore(GatedStore):
    """Fails the first ``n`` writes with an arbitrary exception type."""

    def __init__(self, inner, n: int) -> None:
        super().__init__(inner)
        self.failures_left = n

    def write_batch(self, table, *, batch_id):
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("something unexpected")
        return super().write_batch(table, batch_id=batch_id)


def test_the_writer_outlives_any_exception_from_the_store(tmp_path):
    flaky = FlakyStore(ParquetLogStore(tmp_path / "log"), n=3)
    plog = PredictionLog(
        flaky, tmp_path / "spool", batch_rows=10, retry_initial_seconds=0.01, retry_max_seconds=0.05
    )
    for i in range(100):
        plog.submit(record(i))
    assert plog.flush(timeout=60, drain_spool=True)
    stats = plog.stats()
    assert (stats.store_failures, stats.written, stats.lost) == (3, 100, 0)
    assert stats.last_error == "RuntimeError: something unexpected"
    assert sorted(plog.read()["request_id"]) == [f"req-{i:06d}" for i in range(100)]
    plog.close()


def test_when_the_spool_fails_too_the_loss_is_counted_and_logged(tmp_path, caplog):
    (tmp_path / "spool").write_text("not a folder")  # the spool cannot be written
    gated = GatedStore(ParquetLogStore(tmp_path / "log"))
    gated.gate.clear()
    plog = PredictionLog(gated, tmp_path / "spool", batch_rows=10, retry_initial_seconds=0.01)
    with caplog.at_level(logging.ERROR, logger="lendml"):
        for i in range(25):
            plog.submit(record(i))  # never raises
        plog.flush(timeout=60)
    assert plog.stats().lost == 25
    assert "records lost" in caplog.text
    plog.close(timeout=10)


def test_submit_takes_only_prediction_records(tmp_path):
    with open_prediction_log(parquet_settings(), tmp_path) as plog, pytest.raises(TypeError):
        plog.submit({"request_id": "r1"})


def test_a_log_opened_without_a_writer_spools_what_it_is_given(tmp_path):
    plog = open_prediction_log(parquet_settings(), tmp_path, start=False)
    plog.submit(record(1))
    assert plog.stats().spool_files == 1
    plog.close()
    with open_prediction_log(parquet_settings(), tmp_path) as live:
        assert live.flush(timeout=60, drain_spool=True)
    assert list(read_prediction_log(parquet_settings(), tmp_path)["request_id"]) == ["req-000001"]


def test_data_written_before_the_holdout_columns_reads_as_the_cutoffs_decision(tmp_path):
    """Format 1 (no policy_decision, no explore): Parquet files and spooled batches."""
    old = rows_to_table([encode(record(i)) for i in range(4)]).drop_columns(
        ["policy_decision", "explore"]
    )
    folder = tmp_path / "data" / "prediction_log" / "date=2026-11-02"
    folder.mkdir(parents=True)
    pq.write_table(old.slice(0, 2), folder / "part-old.parquet")
    spool = Spool(tmp_path / "data" / "prediction_log_spool")
    spool.folder.mkdir(parents=True)
    with (
        pa.OSFile(str(spool.folder / "0-old.arrow"), "wb") as fh,
        ipc.new_file(fh, old.schema) as writer,
    ):
        writer.write_table(old.slice(2))
    assert spool.files(), "the spool should list the old batch"
    with open_prediction_log(parquet_settings(), tmp_path) as live:
        assert live.flush(timeout=60, drain_spool=True)
    frame = read_prediction_log(parquet_settings(), tmp_path)
    assert list(frame["request_id"]) == [f"req-{i:06d}" for i in range(4)]
    assert list(frame["policy_decision"]) == list(frame["decision"])
    assert not frame["explore"].any()


# ---------------------------------------------------------------------------- settings


def test_settings_are_strict_and_checked():
    with pytest.raises(ValidationError, match="rotate_row"):
        ParquetLogSettings(rotate_row=10)  # a typo is an error, not a silent default
    with pytest.raises(ValidationError, match="retry_max_seconds"):
        ParquetLogSettings(retry_initial_seconds=5, retry_max_seconds=1)
    with pytest.raises(ValidationError):
        ParquetLogSettings(queue_size=0)
    with pytest.raises(ValidationError):
        PostgresLogSettings(type="postgres", url_env="NOT-A-NAME")
    config = ProjectConfig.model_validate(
        {"prediction_log": {"type": "postgres", "table": "audit.decisions", "batch_rows": 50}}
    )
    assert isinstance(config.prediction_log, PostgresLogSettings)
    assert config.prediction_log.url_env == "LENDML_PREDICTION_LOG_URL"
    assert isinstance(ProjectConfig().prediction_log, ParquetLogSettings)


def test_postgres_without_its_url_variable_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LENDML_PREDICTION_LOG_URL", raising=False)
    with pytest.raises(
        ConfigError, match=r"\$LENDML_PREDICTION_LOG_URL.*never goes in lendml.yaml"
    ):
        open_prediction_log(PostgresLogSettings(type="postgres"), tmp_path)


# ---------------------------------------------------------------------------- API and docs


def test_the_public_api_is_exported():
    names = prediction_log_module.__all__
    assert len(names) == len(set(names))  # the order is ruff's (RUF022)
    for name in names:
        assert hasattr(prediction_log_module, name)


def test_the_docstring_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(prediction_log_module) if t.examples]
    assert tests
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


def test_the_docs_example_runs(tmp_path):
    mod = runpy.run_path(str(ROOT / "docs" / "examples" / "prediction_log_example.py"))
    result = mod["main"](tmp_path)
    assert result["logged"] == 6
    assert result["drift_columns"] == ["features.dti", "features.grade", "features.utilization"]
    assert result["erased"] == 2
    assert result["after_erase"] == 4
    assert result["declines"] == 2


def test_the_docs_name_every_setting_and_command():
    doc = (ROOT / "docs" / "prediction-log.md").read_text()
    for name in (*ParquetLogSettings.model_fields, *PostgresLogSettings.model_fields):
        assert f"`{name}`" in doc, name
    for command in ("lendml log show", "lendml log erase", "lendml log prune"):
        assert command in doc
    assert "prediction_log_example.py" in doc


def test_no_record_values_reach_the_describe_helper_for_store_errors(tmp_path):
    # Store failures are logged as class and first line; an OSError names a path only.
    err = NotADirectoryError(20, "Not a directory", os.fspath(tmp_path / "x"))
    from lendml.serving._predlog_writer import _describe

    text = _describe(err)
    assert text.startswith("NotADirectoryError:") and "\n" not in text


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.integers(2**63, 2**70),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=4),
    st.sampled_from(["2026-01-01T10:00:00", "2026-01-01", "12"]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    features=st.lists(
        st.dictionaries(st.sampled_from("abc"), SCALARS, max_size=3), min_size=1, max_size=8
    )
)
def test_flattened_feature_columns_hold_each_records_values(tmp_path_factory, features):
    root = tmp_path_factory.mktemp("flat")
    store = ParquetLogStore(root / "log")
    records = [record(i, features=f) for i, f in enumerate(features)]
    store.write_batch(rows_to_table([encode(r) for r in records]), batch_id="b")
    frame = PredictionLog(store, root / "spool", start=False).read()
    names = sorted({k for f in features for k in f})
    assert [c for c in frame.columns if c.startswith("features.")] == [
        f"features.{k}" for k in names
    ]
    for k in names:
        column = frame[f"features.{k}"]
        for i, f in enumerate(features):
            want, got = f.get(k), column.iloc[i]
            if want is None:
                assert got is None or got is pd.NA or (isinstance(got, float) and math.isnan(got))
            elif isinstance(want, str):  # NUL is stored as U+FFFD (PostgreSQL refuses it)
                assert got == want.replace("\x00", "\ufffd"), (k, i, want, got)
            elif isinstance(want, bool):
                assert got == want and type(got) is not float, (k, i, want, got)
            elif column.dtype == "float64":  # numbers with gaps or fractions
                assert got == float(want), (k, i, want, got)
            elif isinstance(want, int):  # an int64 column, or exact in an object column
                assert got == want and not isinstance(got, float), (k, i, want, got)
            else:
                assert got == want, (k, i, want, got)


def test_a_record_that_cannot_be_encoded_is_counted_not_raised(tmp_path, caplog):
    gated = GatedStore(ParquetLogStore(tmp_path / "log"), hang=True)
    gated.gate.clear()
    plog = PredictionLog(gated, tmp_path / "spool", queue_size=1, spill_rows=2, batch_rows=1)
    plog.submit(record(0))
    wait_for(gated.waiting.is_set, "the writer to be stuck in the store")
    with caplog.at_level(logging.ERROR, logger="lendml"):
        plog.submit(record(1))  # fills the queue
        plog.submit(record(2, score=None))  # spilled on the request path: cannot be encoded
        plog.submit(record(3))  # spilled with it
        gated.gate.set()
        plog.submit(record(4, version=2**70))  # through the writer: it cannot sink a batch
        plog.submit(record(5))
        assert plog.flush(timeout=60, drain_spool=True)
    stats = plog.stats()
    assert (stats.accepted, stats.written, stats.lost) == (6, 4, 2)
    assert "could not be encoded (TypeError)" in caplog.text
    assert "could not be encoded (ValueError)" in caplog.text
    plog.close()


def test_a_damaged_spool_file_is_set_aside_and_the_backlog_goes_on(tmp_path, caplog):
    store = ParquetLogStore(tmp_path / "log")
    spool = Spool(tmp_path / "spool")
    spool.write(rows_to_table([encode(record(1))]), batch_id="20261102T000000000000-a")
    (tmp_path / "spool" / "20261102T000000000001-b.arrow").write_bytes(b"not arrow at all")
    spool.write(rows_to_table([encode(record(2))]), batch_id="20261102T000000000002-c")
    with caplog.at_level(logging.ERROR, logger="lendml"):
        plog = PredictionLog(store, tmp_path / "spool")
        assert plog.flush(timeout=60, drain_spool=True)
        plog.close()
    assert sorted(store.read()["request_id"].to_pylist()) == ["req-000001", "req-000002"]
    assert (tmp_path / "spool" / "unreadable" / "20261102T000000000001-b.arrow").exists()
    assert "cannot be read" in caplog.text
