"""One contract for every prediction-log store: Parquet files and PostgreSQL behave alike.

Each test runs once per store kind. The PostgreSQL cases use a real server (see
``prediction_log_support``) and are skipped locally without one, a failure on CI;
``tests/integration/test_prediction_log_postgres.py`` adds what only PostgreSQL has.
Expected values are written out by hand or computed from the submitted records, never by
the log's own encoders.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lendml.cli.main import app
from tests.serving.prediction_log_support import (
    T0,
    GatedStore,
    LogEnv,
    make_env,
    record,
    submit_from_threads,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
KINDS = ("parquet", pytest.param("postgres", marks=pytest.mark.integration))


@pytest.fixture(params=KINDS)
def env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Iterator[LogEnv]:
    yield from make_env(request.param, tmp_path, monkeypatch)


def request_ids(frame) -> list[str]:
    return list(frame["request_id"])


# ---------------------------------------------------------------------------- round trip


def test_records_read_back_with_their_values_oldest_first(env):
    records = [record(i) for i in range(40)]
    plog = env.open()
    for r in reversed(records):  # submitted newest first: reading sorts by time
        plog.submit(r)
    assert plog.flush(timeout=60)
    assert wait_for(lambda: len(env.read()) == 40, "40 records in the store")

    frame = env.read()
    assert request_ids(frame) == [r.request_id for r in records]
    assert str(frame["time"].dtype) == "datetime64[us, UTC]"
    assert list(frame.columns[:11]) == [
        "request_id",
        "time",
        "model",
        "version",
        "role",
        "decision",
        "score",
        "probability",
        "reasons",
        "policy_decision",
        "explore",
    ]
    assert sorted(frame.columns[11:]) == [
        "entity.customer_id",
        "features.dti",
        "features.grade",
        "features.n_loans",
    ]
    for row, r in zip(frame.itertuples(index=False), records, strict=True):
        assert row.time.to_pydatetime() == r.time
        assert (row.model, row.version, row.role, row.decision) == (
            r.model,
            r.version,
            r.role,
            r.decision,
        )
        assert (row.score, row.probability) == (r.score, r.probability)
        assert row.reasons == r.reasons
    assert list(frame["entity.customer_id"]) == [i % 5 for i in range(40)]
    assert list(frame["features.dti"]) == [i / 1000 for i in range(40)]
    assert list(frame["features.grade"]) == ["ABCD"[i % 4] for i in range(40)]

    nested = env.read(flatten=False)
    assert list(nested["entity"]) == [r.entity for r in records]
    assert list(nested["features"]) == [r.features for r in records]


def test_the_holdout_columns_read_back(env):
    records = [
        record(0),  # a decline of the cutoffs
        record(1, policy_decision="decline", explore=True),  # approved by the holdout
        record(2, decision="approve", policy_decision="refer", explore=True),
        record(3),
    ]
    plog = env.open()
    for r in records:
        plog.submit(r)
    plog.close()
    frame = env.read()
    assert list(frame["decision"]) == ["decline", "approve", "approve", "approve"]
    assert list(frame["policy_decision"]) == ["decline", "decline", "refer", "approve"]
    assert list(frame["explore"]) == [False, True, True, False]
    assert str(frame["explore"].dtype) == "bool"
    res = CliRunner().invoke(app, ["log", "show", "--json", "--project", env.yaml()])
    assert res.exit_code == 0, res.output
    shown = [json.loads(line) for line in res.output.splitlines()]
    assert [(r["policy_decision"], r["explore"]) for r in shown[:2]] == [
        ("decline", False),
        ("decline", True),
    ]


def test_reads_filter_by_time_range_and_model(env):
    plog = env.open()
    for i in range(30):
        plog.submit(record(i))
    plog.close()
    got = env.read(start=T0 + timedelta(seconds=10), end=T0 + timedelta(seconds=20))
    assert request_ids(got) == [f"req-{i:06d}" for i in range(10, 20)]  # end is exclusive
    # ISO strings and naive datetimes are UTC
    assert len(env.read(start="2026-11-02T09:00:25Z")) == 5
    assert len(env.read(end=datetime(2026, 11, 2, 9, 0, 5))) == 5
    fraud = env.read(model="fraud")
    assert request_ids(fraud) == [f"req-{i:06d}" for i in range(0, 30, 3)]
    assert env.read(model="nope").empty


def test_last_reads_only_the_newest_records_oldest_first(env):
    plog = env.open()
    for i in range(0, 4 * 86400, 7200):  # four days, one record every two hours
        plog.submit(record(i))
    plog.close()
    newest = [f"req-{i:06d}" for i in range(0, 4 * 86400, 7200)]
    assert request_ids(env.read(last=5)) == newest[-5:]
    assert request_ids(env.read(last=30)) == newest[-30:]  # more than a day's worth
    assert request_ids(env.read(last=1000)) == newest
    assert env.read(last=0).empty
    fraud = [f"req-{i:06d}" for i in range(0, 4 * 86400, 7200) if i % 3 == 0]
    assert request_ids(env.read(model="fraud", last=3)) == fraud[-3:]
    assert request_ids(env.read(end=T0 + timedelta(days=1), last=2)) == newest[10:12]


def test_an_empty_log_reads_as_an_empty_frame_with_the_columns(env):
    frame = env.read()
    assert frame.empty
    assert list(frame.columns) == [
        "request_id",
        "time",
        "model",
        "version",
        "role",
        "decision",
        "score",
        "probability",
        "reasons",
        "policy_decision",
        "explore",
    ]


def test_awkward_values_are_kept_or_made_json_safe(env):
    awkward = record(
        1,
        request_id="req-\x00nul",
        entity={"customer_id": "C-ü-42", "account": 2**70},
        features={"nan": math.nan, "inf": -math.inf, "none": None, "text": "a\x00b", "t": True},
        reasons=[{"code": "R02", "shares": [0.5, 0.25]}],
    )
    plog = env.open()
    plog.submit(awkward)
    plog.close()
    nested = env.read(flatten=False)
    assert len(nested) == 1
    row = nested.iloc[0]
    assert row["request_id"] == "req-\ufffdnul"  # NUL is refused by PostgreSQL text
    assert row["entity"] == {"customer_id": "C-ü-42", "account": 2**70}
    assert row["features"] == {
        "nan": None,
        "inf": None,
        "none": None,
        "text": "a\ufffdb",
        "t": True,
    }
    assert row["reasons"] == [{"code": "R02", "shares": [0.5, 0.25]}]


def test_times_are_stored_in_utc(env):
    from zoneinfo import ZoneInfo

    plog = env.open()
    plog.submit(record(0, time=datetime(2026, 11, 2, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))))
    plog.submit(record(1, time=datetime(2026, 11, 2, 9, 30)))  # naive means UTC
    plog.close()
    assert [t.isoformat() for t in env.read()["time"]] == [
        "2026-11-02T09:00:00+00:00",
        "2026-11-02T09:30:00+00:00",
    ]


# ---------------------------------------------------------------------------- no loss


def test_store_outage_under_load_loses_nothing_and_duplicates_nothing(env):
    n = 3000
    plog = env.open(queue_size=100, spill_rows=50)
    submit_from_threads(plog, 500, threads=3)  # the store works at first
    assert plog.flush(timeout=60)
    env.break_store()
    submit_from_threads(plog, 2000, threads=4, offset=500)  # scoring goes on
    assert plog.flush(timeout=60)
    stats = plog.stats()
    assert stats.store_failures >= 1
    assert stats.spooled >= 1
    assert stats.spool_files >= 1
    assert stats.lost == 0
    env.repair_store()
    submit_from_threads(plog, 500, threads=2, offset=2500)
    assert plog.flush(timeout=120, drain_spool=True)

    frame = env.read()
    assert len(frame) == n
    assert sorted(request_ids(frame)) == [f"req-{i:06d}" for i in range(n)]
    stats = plog.stats()
    assert (stats.accepted, stats.written, stats.spool_files, stats.lost) == (n, n, 0, 0)
    assert stats.replayed == stats.spooled


def test_a_full_queue_spills_to_the_spool_instead_of_blocking(env):
    gated = GatedStore(env.store(), hang=True)
    gated.gate.clear()  # the store hangs: the writer's first batch never returns
    plog = env.open(store=gated, queue_size=10, spill_rows=25, batch_rows=5)
    plog.submit(record(0))
    plog.flush(timeout=0.5)  # hand the writer its batch
    wait_for(gated.waiting.is_set, "the writer to be stuck in the store")
    submit_from_threads(plog, 1000, threads=4, offset=1)  # returns: nothing blocks
    assert plog.stats().accepted == 1001
    wait_for(lambda: plog.stats().spooled >= 900, "the overflow in the spool")
    gated.gate.set()
    assert plog.flush(timeout=120, drain_spool=True)
    assert sorted(request_ids(env.read())) == [f"req-{i:06d}" for i in range(1001)]


def test_a_hung_store_at_close_spools_what_the_writer_holds(env):
    gated = GatedStore(env.store(), hang=True)
    plog = env.open(store=gated, batch_rows=10)
    gated.gate.clear()
    for i in range(35):
        plog.submit(record(i))
    wait_for(gated.waiting.is_set, "the writer to be stuck in the store")
    plog.close(timeout=1)
    gated.gate.set()  # the stuck write finishes after all: its spooled copy must not double
    reopened = env.open()
    assert reopened.flush(timeout=120, drain_spool=True)
    assert sorted(request_ids(env.read())) == [f"req-{i:06d}" for i in range(35)]


CRASHING_WRITER = """
import json, os, signal, sys
from pathlib import Path
from lendml.core.config import ParquetLogSettings, PostgresLogSettings
from lendml.serving.prediction_log import open_prediction_log
from tests.serving.prediction_log_support import record

settings = json.loads(os.environ["PREDLOG_SETTINGS"])
cls = PostgresLogSettings if settings["type"] == "postgres" else ParquetLogSettings
plog = open_prediction_log(cls(**settings), sys.argv[1])
for i in range(int(sys.argv[2])):
    plog.submit(record(i))
assert plog.flush(timeout=60)
stats = plog.stats()
print(json.dumps({"spooled": stats.spooled, "files": stats.spool_files}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: a crash
"""


def test_a_crashed_process_spool_is_replayed_by_the_next_one(env):
    env.break_store()
    proc = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(env.root), "1200"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PREDLOG_SETTINGS": env.settings().model_dump_json()},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    report = json.loads(proc.stdout)
    assert report["spooled"] == 1200 and report["files"] >= 1
    # a temporary file half written at the moment of the crash is not a batch
    (env.spool_dir() / ".20261102T000000000000-x.arrow.dead.tmp").write_bytes(b"\x00" * 10)

    env.repair_store()
    plog = env.open()
    assert plog.flush(timeout=120, drain_spool=True)
    assert sorted(request_ids(env.read())) == [f"req-{i:06d}" for i in range(1200)]


def test_replaying_a_batch_twice_adds_nothing(env, tmp_path):
    env.break_store()
    plog = env.open()
    for i in range(300):
        plog.submit(record(i))
    plog.close()
    copies = tmp_path / "copies"
    shutil.copytree(env.spool_dir(), copies, ignore=shutil.ignore_patterns(".lock"))
    assert list(copies.glob("*.arrow"))
    env.repair_store()
    first = env.open()
    assert first.flush(timeout=120, drain_spool=True)
    first.close()
    # as if the process died after writing the batches and before deleting them
    for path in copies.glob("*.arrow"):
        shutil.copy(path, env.spool_dir() / path.name)
    second = env.open()
    assert second.flush(timeout=120, drain_spool=True)
    assert sorted(request_ids(env.read())) == [f"req-{i:06d}" for i in range(300)]


# ---------------------------------------------------------------------------- personal data


def test_erase_removes_exactly_one_entity_from_store_and_spool(env):
    gated = GatedStore(env.store())  # shut: writes fail, the rest of the store works
    plog = env.open(store=gated)
    for i in range(100):
        plog.submit(record(i))
    assert plog.flush(timeout=60)
    gated.gate.clear()
    for i in range(100, 150):
        plog.submit(record(i))
    assert plog.flush(timeout=60)
    assert plog.stats().spool_files >= 1

    report = plog.erase("customer_id", "3")  # the text form matches the integer key
    assert (report.store, report.spool) == (20, 10)
    gated.gate.set()
    assert plog.flush(timeout=120, drain_spool=True)
    frame = env.read()
    assert sorted(request_ids(frame)) == [f"req-{i:06d}" for i in range(150) if i % 5 != 3]
    assert plog.erase("customer_id", 3).total == 0


def test_erase_matches_values_by_their_text_in_every_store(env):
    values = [42, "42", "x y", "ü", -3, 4.0, True, "true", None, "C-1"]
    plog = env.open()
    for i, v in enumerate(values * 3):
        plog.submit(record(i, entity={"customer_id": v, "branch": "b1"}))
    plog.submit(record(99, entity={"other_key": 42}))  # no customer_id at all
    plog.close()

    def text(v) -> str:  # the documented rule, written out independently
        return v if isinstance(v, str) else json.dumps(v)

    erased: set[str] = set()
    for target in ("42", "x y", "ü", -3, "4.0", "true", "null"):
        report = env.open().erase("customer_id", target)
        erased.add(text(target))
        kept = [
            f"req-{i:06d}"
            for i, v in enumerate(values * 3)
            if v is None or text(v) not in erased  # a null key matches nothing
        ]
        assert sorted(request_ids(env.read())) == sorted([*kept, "req-000099"]), target
        matched = sum(v is not None and text(v) == text(target) for v in values)
        assert report.store == 3 * matched, target


def test_cli_erase_and_show(env):
    project = env.yaml()
    plog = env.open()
    for i in range(25):
        plog.submit(record(i, entity={"customer_id": f"C{i % 5}"}))
    plog.close()
    runner = CliRunner()
    res = runner.invoke(app, ["log", "erase", "customer_id=C2", "--project", project])
    assert res.exit_code == 0, res.output
    assert "Erased 5 records" in res.output
    assert sorted({e["customer_id"] for e in env.read(flatten=False)["entity"]}) == [
        "C0",
        "C1",
        "C3",
        "C4",
    ]
    res = runner.invoke(app, ["log", "show", "--limit", "3", "--json", "--project", project])
    assert res.exit_code == 0, res.output
    shown = [json.loads(line) for line in res.output.splitlines()]
    assert [r["request_id"] for r in shown] == ["req-000021", "req-000023", "req-000024"]
    res = runner.invoke(app, ["log", "show", "--model", "fraud", "--json", "-p", project])
    assert {json.loads(line)["model"] for line in res.output.splitlines()} == {"fraud"}
    res = runner.invoke(app, ["log", "show", "-n", "2", "-p", project])
    assert res.exit_code == 0, res.output
    assert "Prediction log (2 newest records)" in res.output  # a table (cells may wrap)
    assert "decline" in res.output or "approve" in res.output


def test_prune_removes_records_older_than_the_cutoff_from_store_and_spool(env):
    gated = GatedStore(env.store())
    plog = env.open(store=gated)
    for i in range(0, 3 * 86400, 3600):  # three days, one record an hour
        plog.submit(record(i))
    assert plog.flush(timeout=60)
    gated.gate.clear()
    plog.submit(record(3 * 86400 + 1))
    plog.submit(record(10, request_id="late-old"))  # an old record still in the spool
    assert plog.flush(timeout=60)

    cutoff = T0 + timedelta(days=1, hours=12)
    removed = plog.prune(cutoff)
    assert removed == 36 + 1
    gated.gate.set()
    assert plog.flush(timeout=120, drain_spool=True)
    times = list(env.read()["time"])
    assert len(times) == 36 + 1
    assert min(times) == cutoff


def test_retention_prunes_when_the_writer_starts(env):
    plog = env.open()
    for i in range(10):
        plog.submit(record(i * 86400))  # one a day for ten days
    plog.close()
    now = T0 + timedelta(days=9, hours=1)
    settings = env.settings(retention_days=3)
    from lendml.serving.prediction_log import open_prediction_log

    with open_prediction_log(settings, env.root, clock=lambda: now):
        wait_for(lambda: len(env.read()) == 3, "records older than 3 days to be pruned")
    assert [t.day for t in env.read()["time"]] == [9, 10, 11]


def test_cli_prune_uses_the_retention_period_or_before(env):
    project = env.yaml()
    now = datetime.now(UTC)  # the command prunes by the real clock
    plog = env.open()
    for age in range(5, 0, -1):  # 5, 4, 3, 2 and 1 day old
        plog.submit(record(age, time=now - timedelta(days=age, minutes=1)))
    plog.close()
    runner = CliRunner()
    res = runner.invoke(app, ["log", "prune", "--project", project])
    assert res.exit_code == 2
    assert "retention_days" in res.output
    before = (now - timedelta(days=3, hours=12)).isoformat()
    res = runner.invoke(app, ["log", "prune", "--before", before, "--project", project])
    assert res.exit_code == 0, res.output
    assert "Pruned 2 records" in res.output
    assert len(env.read()) == 3
    env.yaml(retention_days=1)  # every record left is more than a day old
    res = runner.invoke(app, ["log", "prune", "--project", project])
    assert "Pruned 3 records" in res.output, res.output
    assert env.read().empty


def test_failures_log_no_personal_data(env, caplog):
    caplog.set_level("DEBUG", logger="lendml")
    plog = env.open()
    env.break_store()
    for i in range(50):
        plog.submit(
            record(i, entity={"customer_id": f"SECRET-ID-{i}"}, features={"x": 0.123456789})
        )
    assert plog.flush(timeout=60)
    env.repair_store()
    assert plog.flush(timeout=120, drain_spool=True)
    plog.erase("customer_id", "SECRET-ID-7")
    assert plog.stats().store_failures >= 1
    assert "spool" in caplog.text
    assert "SECRET-ID" not in caplog.text
    assert "0.123456789" not in caplog.text


def test_time_bounds_given_as_bad_strings_are_refused(env):
    from lendml.errors import ConfigError

    with pytest.raises(ConfigError, match="not an ISO-8601 time"):
        env.read(start="yesterday")


def test_record_times_keep_microseconds(env):
    t = datetime(2026, 11, 2, 9, 0, 0, 123456, tzinfo=UTC)
    plog = env.open()
    plog.submit(record(0, time=t))
    plog.close()
    assert env.read()["time"].iloc[0].to_pydatetime() == t


def test_records_submitted_after_close_are_spooled_not_lost(env):
    plog = env.open()
    plog.close()
    plog.submit(record(1))
    plog.submit(record(2))
    reopened = env.open()
    assert reopened.flush(timeout=120, drain_spool=True)
    assert request_ids(env.read()) == ["req-000001", "req-000002"]
