"""The model registry: register → resolve → load, tamper checks, aliases and their history."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from lendml.errors import ArtifactError, ConfigError, ModelNotFound, RegistryError
from lendml.models import load_model
from lendml.registry import (
    ALIASES,
    DATA_WINDOWS_TAG,
    FEATURE_SERVICE_TAG,
    FEATURE_SERVICE_VERSION_TAG,
    MANIFEST_SHA256_TAG,
    TRAINING_SET_FINGERPRINT_TAG,
    PromotionEvent,
    Registry,
    Tracker,
)
from lendml.registry.history import holders
from tests.registry.conftest import flip_byte, settings, uri_path

LINEAGE = {
    FEATURE_SERVICE_TAG: "credit_v1",
    FEATURE_SERVICE_VERSION_TAG: "3f2a9c",
    TRAINING_SET_FINGERPRINT_TAG: "sha256:abc123",
    DATA_WINDOWS_TAG: '{"train": ["2024-01-01", "2024-06-30"]}',
}


@pytest.fixture(scope="module")
def root(new_root):
    return new_root("registry")


@pytest.fixture(scope="module")
def tracker(root) -> Tracker:
    return Tracker(settings(), root=root, default_experiment="credit")


@pytest.fixture(scope="module")
def registry(root) -> Registry:
    return Registry(settings(), root=root)


@pytest.fixture(scope="module")
def log_run(tracker, tiny_model):
    """Log the tiny model in a new finished run; return (run_id, manifest sha256)."""

    def log(*, lineage: dict[str, str] | None = None) -> tuple[str, str]:
        with tracker.start_run(run_name="train", tags=lineage or LINEAGE) as run:
            run.log_metrics({"auc": 0.8})
            sha = run.log_model(tiny_model, metadata={"note": "tiny"})
        return run.run_id, sha

    return log


@pytest.fixture(scope="module")
def ladder(registry, log_run):
    """A model 'ladder' with three versions (three runs), used by the alias tests."""
    versions = [registry.register(log_run()[0], "ladder").version for _ in range(3)]
    assert versions == [1, 2, 3]
    return "ladder"


def test_register_resolve_load_round_trip(registry, log_run, tiny_model, tiny_data, tmp_path):
    X, _ = tiny_data
    run_id, sha = log_run()
    info = registry.register(run_id, "credit_pd", description="first cut")
    assert (info.name, info.version, info.run_id) == ("credit_pd", 1, run_id)
    assert info.manifest_sha256 == sha == info.tags[MANIFEST_SHA256_TAG]
    assert info.lineage == {
        **LINEAGE,
        "lendml.code_version": info.lineage["lendml.code_version"],
        "lendml.model_kind": "lightgbm",
    }
    assert info.description == "first cut"
    assert info.source.endswith(f"/{run_id}/artifacts/model")
    assert info.created_at.tzinfo is UTC

    assert registry.resolve("credit_pd/1") == info
    assert registry.resolve("models:/credit_pd/1") == info
    registry.promote("credit_pd", 1, reason="first model", user="ana")
    champion = registry.resolve("credit_pd")  # a bare name means the champion
    assert champion.version == 1 and champion.aliases == ("champion",)
    assert registry.resolve("credit_pd@champion") == champion

    loaded = registry.load("credit_pd@champion", cache_dir=tmp_path / "cache")
    assert loaded.info == champion
    assert loaded.path == tmp_path / "cache" / "credit_pd" / f"1-{sha[:12]}"
    expected = tiny_model.predict_proba(X)
    np.testing.assert_array_equal(loaded.model.predict_proba(X), expected)
    # the second load comes from the cache and is verified again
    again = registry.load("credit_pd/1", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.model.predict_proba(X), expected)
    assert load_model(again.path, expected_sha256=sha).kind == "lightgbm"


def test_registering_the_same_run_again_returns_the_same_version(registry, log_run):
    run_id, _ = log_run()
    first = registry.register(run_id, "same_run")
    second = registry.register(run_id, "same_run")
    third = registry.register(run_id, "same_run", artifact_path="./model/")
    assert first.version == second.version == third.version == 1
    assert [v.version for v in registry.get_model("same_run").versions] == [1]


def test_a_run_without_a_model_or_with_a_tampered_one_cannot_be_registered(
    registry, tracker, log_run
):
    with tracker.start_run(run_name="no-model") as run:
        run.log_metrics({"auc": 0.5})
    with pytest.raises(ArtifactError, match=r"has no artifact 'model'; it has: lendml"):
        registry.register(run.run_id, "broken")

    run_id, _ = log_run()
    stored = uri_path(tracker.get_run(run_id).artifact_uri) / "model" / "model.txt"
    flip_byte(stored)
    with pytest.raises(ArtifactError, match=r"model\.txt.* was modified"):
        registry.register(run_id, "broken")

    # a consistent rewrite of file and manifest still differs from the hash the run recorded
    run_id, _ = log_run()
    folder = uri_path(tracker.get_run(run_id).artifact_uri) / "model"
    manifest = (folder / "lendml-model.json").read_text()
    (folder / "lendml-model.json").write_text(manifest.replace('"tiny"', '"evil"'))
    with pytest.raises(ArtifactError, match="manifest hash"):
        registry.register(run_id, "broken")

    with pytest.raises(ModelNotFound, match="No registered model 'broken'"):
        registry.get_model("broken")  # nothing was half-registered


def test_a_failed_run_cannot_be_registered(registry, tracker, tiny_model):
    with pytest.raises(RuntimeError), tracker.start_run(run_name="dies") as run:
        run.log_model(tiny_model)
        raise RuntimeError("out of memory")
    with pytest.raises(RegistryError, match="ended FAILED; only a run that finished"):
        registry.register(run.run_id, "failed_model")
    with pytest.raises(ModelNotFound, match="No run with id 'nope'"):
        registry.register("nope", "failed_model")


def test_unknown_names_versions_and_aliases_name_what_exists(registry, ladder):
    with pytest.raises(ModelNotFound, match=r"No registered model 'nope'; registered .*ladder"):
        registry.resolve("nope/1")
    with pytest.raises(ModelNotFound, match=r"'ladder' has no version 9; its versions: 1, 2, 3"):
        registry.resolve("ladder/9")
    with pytest.raises(ModelNotFound, match=r"'ladder' has no alias 'shadow'"):
        registry.resolve("ladder@shadow")
    with pytest.raises(ConfigError, match="not valid"):
        registry.resolve("bad name/1")
    with pytest.raises(ConfigError, match="whole numbers"):
        registry.resolve("ladder/zero")


def test_tampered_cache_and_store_are_refused(registry, log_run, tmp_path):
    run_id, _ = log_run()
    info = registry.register(run_id, "tamper")
    cache = tmp_path / "cache"
    loaded = registry.load("tamper/1", cache_dir=cache)

    flip_byte(loaded.path / "model.txt")  # a changed byte in the cached copy
    with pytest.raises(ArtifactError, match=r"model\.txt.*was modified.*delete that folder"):
        registry.load("tamper/1", cache_dir=cache)

    flip_byte(uri_path(info.source) / "model.txt")  # and in the artifact store
    with pytest.raises(ArtifactError, match=r"model\.txt.*was modified"):
        registry.load("tamper/1", cache_dir=tmp_path / "fresh-cache")
    with pytest.raises(ArtifactError, match="was modified"):
        registry.verify("tamper/1")
    assert not (tmp_path / "fresh-cache" / "tamper" / "1").exists()


def test_promote_and_rollback_keep_who_when_why(registry, ladder, monkeypatch):
    before = datetime.now(UTC)
    e1 = registry.promote(ladder, 1, reason="first model", user="ana")
    monkeypatch.setenv("LENDML_USER", "ben")
    e2 = registry.promote(ladder, "2", reason="beats v1 on Q3 OOT")
    e3 = registry.promote(ladder, 3, reason="fresher data")
    assert (e1.previous_version, e2.previous_version, e3.previous_version) == (None, 1, 2)
    assert (e1.user, e2.user) == ("ana", "ben")
    assert registry.resolve(f"{ladder}@champion").version == 3

    # promoting the holder again changes nothing
    assert registry.promote(ladder, 3, reason="again") == e3

    r1 = registry.rollback(ladder, reason="v3 drifts", user="cleo")
    assert (r1.action, r1.version, r1.previous_version, r1.user) == ("rollback", 2, 3, "cleo")
    assert registry.resolve(ladder).version == 2
    r2 = registry.rollback(ladder, reason="v2 too")
    assert (r2.version, r2.previous_version) == (1, 2)
    with pytest.raises(RegistryError, match="no previous holder"):
        registry.rollback(ladder, reason="once more")
    assert registry.resolve(ladder).version == 1

    events = registry.history(ladder, "champion")
    assert [(e.action, e.version, e.previous_version) for e in events] == [
        ("promote", 1, None),
        ("promote", 2, 1),
        ("promote", 3, 2),
        ("rollback", 2, 3),
        ("rollback", 1, 2),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.reason for e in events][-1] == "v2 too"
    assert all(e.state == "done" for e in events)
    assert all(before <= e.at <= datetime.now(UTC) for e in events)
    assert events[0].to_dict()["at"].endswith("+00:00")


def test_aliases_are_independent_and_limited(registry, ladder):
    registry.promote(ladder, 3, alias="challenger", reason="candidate")
    registry.promote(ladder, 2, alias="shadow", reason="side by side")
    assert registry.get_model(ladder).aliases["challenger"] == 3
    assert [e.alias for e in registry.history(ladder, "shadow")] == ["shadow"]
    with pytest.raises(RegistryError, match="no previous holder"):
        registry.rollback(ladder, alias="challenger", reason="x")
    with pytest.raises(ConfigError, match="use one of: champion, challenger, shadow"):
        registry.promote(ladder, 1, alias="production", reason="x")
    with pytest.raises(ConfigError, match="use one of"):
        registry.history(ladder, "staging")
    with pytest.raises(ConfigError, match="needs a reason"):
        registry.promote(ladder, 1, alias="shadow", reason="  ")
    assert ALIASES == ("champion", "challenger", "shadow")


def _state(registry: Registry, name: str) -> tuple[dict[str, int], list[PromotionEvent]]:
    return registry.get_model(name).aliases, registry.history(name)


def test_promotion_fails_closed(registry, log_run, unreachable_tracking, tmp_path):
    name = "closed"
    for _ in range(2):
        registry.register(log_run()[0], name)
    registry.promote(name, 1, reason="baseline")
    before = _state(registry, name)

    with pytest.raises(ModelNotFound, match=r"'closed' has no version 7; its versions: 1, 2"):
        registry.promote(name, 7, reason="typo")
    assert _state(registry, name) == before

    flip_byte(uri_path(registry.get_version(name, 2).source) / "model.txt")
    with pytest.raises(ArtifactError, match="was modified"):
        registry.promote(name, 2, reason="tampered")
    assert _state(registry, name) == before

    away = Registry(unreachable_tracking, root=tmp_path)
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:9"):
        away.promote(name, 1, reason="server down")
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:9"):
        away.rollback(name, reason="server down")
    assert time.monotonic() - started < 20
    assert _state(registry, name) == before


def test_rollback_refuses_when_the_alias_was_moved_outside_lendml(registry, log_run):
    name = "outside"
    for _ in range(3):
        registry.register(log_run()[0], name)
    registry.promote(name, 1, reason="a")
    registry.promote(name, 2, reason="b")
    # someone moves the alias with MLflow directly
    registry._client.set_registered_model_alias(name, "champion", "3")
    with pytest.raises(RegistryError, match="moved outside lendml"):
        registry.rollback(name, reason="undo")
    assert registry.resolve(name).version == 3
    # an explicit promotion records the outside holder as the previous one
    event = registry.promote(name, 1, reason="back to basics")
    assert event.previous_version == 3
    assert registry.rollback(name, reason="undo").version == 3


def _event(seq, action, version, previous, state="done"):
    return PromotionEvent(
        alias="champion",
        version=version,
        previous_version=previous,
        user="u",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        reason="r",
        action=action,
        seq=seq,
        state=state,
    )


def test_history_replay_skips_failed_and_unconfirmed_events():
    events = [_event(1, "promote", 1, None), _event(2, "promote", 2, 1)]
    assert holders(events, "champion", 2) == [1, 2]
    failed = [*events, _event(3, "promote", 3, 2, state="failed")]
    assert holders(failed, "champion", 2) == [1, 2]
    # a writer stopped after recording: counts only if the alias did move
    pending = [*events, _event(3, "promote", 3, 2, state="pending")]
    assert holders(pending, "champion", 3) == [1, 2, 3]
    assert holders(pending, "champion", 2) == [1, 2]
    rolled = [*events, _event(3, "rollback", 1, 2)]
    assert holders(rolled, "champion", 1) == [1]
    assert holders(events, "shadow", None) == []


def test_a_corrupted_history_is_reported_not_skipped(registry, log_run):
    name = "corrupt"
    registry.register(log_run()[0], name)
    registry.promote(name, 1, reason="baseline")
    registry._client.set_registered_model_tag(name, "lendml.history.000009-beef00", "{oops")
    with pytest.raises(RegistryError, match=r"'lendml\.history\.000009-beef00' is not a valid"):
        registry.history(name)
    with pytest.raises(RegistryError, match="delete the tag"):
        registry.rollback(name, reason="x")  # fails closed on an unreadable history
    assert registry.resolve(name).version == 1
