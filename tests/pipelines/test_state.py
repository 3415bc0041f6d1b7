"""The loop's state on disk: the lock across processes, step records, the audit log."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lendml.errors import LoopBusy, StoreError
from lendml.pipelines.state import LoopState, content_key

# ------------------------------------------------------------------------------ lock


def _hold_lock_forever(root: str, ready: multiprocessing.Event) -> None:
    with LoopState(root).lock():
        ready.set()
        time.sleep(300)  # killed long before


def test_a_held_lock_raises_loop_busy_and_a_sigkilled_holder_frees_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock_forever, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(60), "the holder never took the lock"
        state = LoopState(tmp_path)
        with pytest.raises(LoopBusy, match=rf"pid {holder.pid} on ") as info, state.lock():
            pytest.fail("the lock was taken twice")
        assert info.value.context["lock"] == str(state.lock_path)
        assert info.value.http_status == 409
        assert holder.is_alive()
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: no cleanup runs
        holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    with state.lock():
        assert state.lock_path.read_text().startswith(f"pid {os.getpid()} on ")
    assert state.lock_path.read_text() == ""  # released: the stamp is cleared


def test_the_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    state = LoopState(tmp_path)
    with state.lock(), pytest.raises(LoopBusy, match=f"pid {os.getpid()}"), state.lock():
        pytest.fail("the lock was taken twice")
    with state.lock():  # freed after the outer block
        pass


# ------------------------------------------------------------------------------ steps

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(), _json, max_size=6))
def test_a_step_record_reads_back_as_written_and_no_temporary_file_is_left(output) -> None:
    with tempfile.TemporaryDirectory() as root:
        state = LoopState(root)
        assert state.read_step("train", "k1") is None
        state.write_step("train", "k1", {"old": True})
        state.write_step("train", "k1", output)  # replaces the record whole
        assert state.read_step("train", "k1") == output
        assert [p.name for p in state.steps.iterdir()] == ["train-k1.json"]


def test_a_failed_write_keeps_the_old_record_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = LoopState(tmp_path)
    state.write_step("train", "k1", {"version": 1})

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        state.write_step("train", "k1", {"version": 2})
    monkeypatch.undo()
    assert state.read_step("train", "k1") == {"version": 1}
    assert [p.name for p in state.steps.iterdir()] == ["train-k1.json"]


@pytest.mark.parametrize(
    "content",
    [b'{"version": 1, "sco', b"", b"\xff\xfe not utf-8"],
    ids=["truncated", "empty", "binary"],
)
def test_a_corrupt_step_record_raises_store_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    state = LoopState(tmp_path)
    state.write_step("evaluate", "abc", {"version": 1})
    path = state.step_path("evaluate", "abc")
    path.write_bytes(content)
    with pytest.raises(StoreError, match=re.escape(str(path))) as info:
        state.read_step("evaluate", "abc")
    assert info.value.context["path"] == str(path)
    assert "delete it to redo the step" in str(info.value)
    assert isinstance(info.value, RuntimeError)


# ------------------------------------------------------------------------------ content_key


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(), _json, min_size=1, max_size=8), st.randoms())
def test_content_key_ignores_dict_order(inputs, rnd) -> None:
    items = list(inputs.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert content_key("train", shuffled, 3) == content_key("train", inputs, 3)
    assert re.fullmatch(r"[0-9a-f]{16}", content_key(inputs))


def test_content_key_of_nested_dicts_ignores_order() -> None:
    a = {"window": {"from": "2024-01-01", "to": "2024-04-01"}, "seed": 1}
    b = {"seed": 1, "window": {"to": "2024-04-01", "from": "2024-01-01"}}
    assert content_key(a) == content_key(b)


@pytest.mark.parametrize(
    "other",
    [
        ("train", {"seed": 2, "window": "90d"}),  # a value
        ("train", {"seeds": 1, "window": "90d"}),  # a key
        ("train", {"seed": "1", "window": "90d"}),  # a type
        ("train", {"seed": 1, "window": "90d", "extra": None}),  # one more key
        ("gate", {"seed": 1, "window": "90d"}),  # another step
        ({"seed": 1, "window": "90d"}, "train"),  # the parts' order
        ("train", {"seed": 1, "window": ["90d"]}),  # nesting
    ],
)
def test_content_key_differs_for_different_inputs(other) -> None:
    assert content_key(*other) != content_key("train", {"seed": 1, "window": "90d"})


# ------------------------------------------------------------------------------ audit


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", 7]), max_size=12))
def test_audit_writes_each_id_once(ids) -> None:
    with tempfile.TemporaryDirectory() as root:
        state = LoopState(root)
        written = [state.audit({"id": i, "n": k}) for k, i in enumerate(ids)]
        first = list(dict.fromkeys(ids))
        assert written == [ids.index(i) == k for k, i in enumerate(ids)]
        history = state.history()
        assert [e["id"] for e in history] == first
        assert [e["n"] for e in history] == [ids.index(i) for i in first]  # the first kept
        lines = state.audit_path.read_text().splitlines() if first else []
        assert len(lines) == len(first)  # a repeat writes nothing


def test_an_audit_entry_needs_an_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs an 'id'"):
        LoopState(tmp_path).audit({"step": "gate"})
    assert LoopState(tmp_path).history() == []


def test_audit_records_when_and_keeps_the_evidence(tmp_path: Path) -> None:
    state = LoopState(tmp_path)
    assert state.audit({"id": "p1:gate", "evidence": {"auc": 0.71, "passed": True}})
    (entry,) = state.history()
    assert entry["evidence"] == {"auc": 0.71, "passed": True}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", entry["recorded_at"])


@pytest.mark.parametrize(
    "torn",
    ['{"id": "b", "step": "tr', '{"id": "b"}'],
    ids=["cut-mid-entry", "cut-before-newline"],
)
def test_a_torn_last_line_is_skipped_and_a_later_append_still_reads(
    tmp_path: Path, torn: str
) -> None:
    state = LoopState(tmp_path)
    state.audit({"id": "a"})
    with open(state.audit_path, "a", encoding="utf-8") as fh:
        fh.write(torn)  # a power cut before the newline
    complete = json.loads(torn) if torn.endswith("}") else None
    assert [e["id"] for e in state.history()] == ["a"] + ([complete["id"]] if complete else [])
    assert state.audit({"id": "c"})
    ids = [e["id"] for e in state.history()]
    assert ids == (["a", "b", "c"] if complete else ["a", "c"])
    # an entry that was never complete was never written: it may be written now, once
    assert state.audit({"id": "b"}) is not complete
    assert state.audit({"id": "b"}) is False
    assert sorted(e["id"] for e in state.history()) == ["a", "b", "c"]
    assert state.audit_path.read_text().endswith("\n")


def test_history_of_a_new_state_is_empty(tmp_path: Path) -> None:
    state = LoopState(tmp_path / "not-yet")
    assert state.history() == []
    assert state.read_step("train", "k") is None
    assert not state.root.exists()  # reading creates nothing
