"""Model lifecycle in the service: hot swaps under load, failed deployments, shadow, canary."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import httpx
import numpy as np
import pytest

from lendml.core.config import CanarySettings, ModelServingSettings, ServingSettings
from lendml.errors import ConfigError
from lendml.registry import FEATURE_SERVICE_TAG, FEATURE_SERVICE_VERSION_TAG
from lendml.serving.app import create_app
from lendml.serving.lifecycle import canary_bucket
from tests.serving.online_world import (
    FEATURES,
    MODEL,
    SERVICE,
    Server,
    World,
    borrowers,
    fit_model,
    http_client,
    mlflow_template,  # noqa: F401 - fixture
    world,  # noqa: F401 - fixture
)

LOAN = 12000.0
IDS = list(range(1, 61))


def expected(model: Any, ids: list[int] = IDS) -> dict[int, float]:
    frame = borrowers().set_index("borrower_id").loc[ids].reset_index()
    frame["loan_to_income"] = LOAN / frame["income"]
    scores = model.decision_function(frame[FEATURES])
    return dict(zip(ids, scores.tolist(), strict=True))


def swaps(manager: Any, outcome: str) -> float:
    value = manager.metrics.registry.get_sample_value(
        "lendml_model_swaps_total", {"model": MODEL, "outcome": outcome}
    )
    return value or 0.0


def test_hot_swap_under_load_fails_no_request_and_mixes_no_versions(world):  # noqa: F811
    v1_model, v2_model, v3_model = fit_model(seed=11), fit_model(seed=12, n_trees=12), fit_model(13)
    v1 = world.register(v1_model)
    world.promote(v1)
    scores = {1: expected(v1_model), 2: expected(v2_model)}
    manager = world.manager(ServingSettings(model=MODEL, watch_interval=0.05))
    manager.start()
    keys = world.keys()
    token, _ = keys.create(scope="score")
    app = create_app(manager, keys=keys, sink=world.sink)
    responses: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    stop = threading.Event()
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
                i = n
                while not stop.is_set():
                    borrower = IDS[i % len(IDS)]
                    res = c.post(
                        "/v1/score",
                        json={"entity": {"borrower_id": borrower}, "fields": {"loan_amount": LOAN}},
                    )
                    responses[n].append((borrower, {"status": res.status_code, **res.json()}))
                    i += 7
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)

    def wait_until(predicate: Any, what: str) -> None:
        gate = threading.Event()
        for _ in range(6000):  # bounded: ~60 s at most
            if predicate() or errors:
                return
            gate.wait(0.01)
        pytest.fail(f"timed out waiting until {what}")

    def seen(version: int, k: int) -> bool:
        return all(
            sum(1 for _, r in responses[n] if r.get("model", {}).get("version") == version) >= k
            for n in range(4)
        )

    with Server(app) as base:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: seen(1, 10), "every client was served by version 1")
            v2 = world.register(v2_model)
            world.promote(v2)  # the watcher notices, loads, warms up, then swaps
            wait_until(lambda: seen(2, 10), "every client was served by version 2")
            # a broken version (no reference point for its reasons) is refused; v2 stays
            v3 = world.register(v3_model, metadata={})
            world.promote(v3)
            wait_until(lambda: swaps(manager, "failed") >= 2, "the watcher tried version 3 twice")
            counts = {n: len(responses[n]) for n in range(4)}
            wait_until(
                lambda: all(len(responses[n]) >= counts[n] + 5 for n in range(4)),
                "more requests after the failed swap",
            )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
    manager.close()
    assert not errors, errors
    total = 0
    for n in range(4):
        versions = []
        for borrower, r in responses[n]:
            assert r["status"] == 200, r
            version = r["model"]["version"]
            # self-consistent: the score is the one that version gives this borrower
            assert r["score"] == pytest.approx(scores[version][borrower], abs=1e-9)
            assert r["probability"] == pytest.approx(1 / (1 + np.exp(-r["score"])), abs=1e-12)
            versions.append(version)
        assert versions == sorted(versions)  # never back to an older version
        assert versions[-1] == 2  # version 3 was refused
        total += len(versions)
    assert swaps(manager, "swapped") == 1
    logged = {r.request_id: r.version for r in world.sink.records}
    assert len(logged) == total
    for n in range(4):
        for _, r in responses[n]:
            assert logged[r["request_id"]] == r["model"]["version"]


def test_a_failing_new_champion_keeps_the_old_one_serving(world):  # noqa: F811
    v1 = world.register(fit_model(seed=11))
    world.promote(v1)
    manager = world.manager()
    manager.start(watch=False)
    world.promote(world.register(fit_model(seed=12), metadata={}))  # no reference point
    status = manager.refresh()
    assert status[MODEL]["champion"] == 1
    assert swaps(manager, "failed") == 1
    with pytest.raises(Exception, match="no reference point"):
        manager.refresh(strict=True)
    manager.close()


def traffic_world(w: World, **policy: Any) -> tuple[Any, Any, dict[str, str], Any, Any]:
    champion, challenger = fit_model(seed=11), fit_model(seed=12, n_trees=12)
    w.promote(w.register(champion))
    w.promote(w.register(challenger), alias="challenger")
    settings = ServingSettings(
        model=MODEL, watch_interval=0, models={MODEL: ModelServingSettings(**policy)}
    )
    manager = w.manager(settings)
    manager.start(watch=False)
    keys = w.keys()
    token, _ = keys.create(scope="admin")
    client = http_client(create_app(manager, keys=keys, sink=w.sink))
    return manager, client, {"Authorization": f"Bearer {token}"}, champion, challenger


def test_canary_takes_a_sticky_share_of_entities(world):  # noqa: F811
    manager, client, auth, champion, challenger = traffic_world(
        world, canary=CanarySettings(ref="challenger", percent=30)
    )
    ids = list(range(1, 301))
    items = [{"entity": {"borrower_id": i}, "fields": {"loan_amount": LOAN}} for i in ids]
    first = client.post("/v1/score:batch", json={"items": items}, headers=auth).json()["results"]
    again = client.post("/v1/score:batch", json={"items": items}, headers=auth).json()["results"]
    roles = [r["role"] for r in first]
    assert roles == [r["role"] for r in again]  # sticky
    share = roles.count("canary") / len(roles)
    assert 0.18 < share < 0.42  # 30% of 300 entities (binomial sd ~2.6 points)
    want = {1: expected(champion, ids), 2: expected(challenger, ids)}
    for i, r in zip(ids, first, strict=True):
        assert r["role"] == (
            "canary" if canary_bucket(MODEL, {"borrower_id": i}) < 30 else "champion"
        )
        assert r["model"]["version"] == (2 if r["role"] == "canary" else 1)
        assert r["score"] == pytest.approx(want[r["model"]["version"]][i], abs=1e-9)
    one = client.post("/v1/score", json=items[0], headers=auth).json()
    assert one["role"] == roles[0]
    # an admin turns the canary off: every entity goes to the champion
    res = client.put(f"/v1/admin/models/{MODEL}/traffic", json={"canary": None}, headers=auth)
    assert res.status_code == 200 and res.json()["canary"] is None
    after = client.post("/v1/score:batch", json={"items": items}, headers=auth).json()["results"]
    assert {r["role"] for r in after} == {"champion"}
    manager.close()


def test_shadow_scores_the_same_request_logs_it_and_never_returns_it(world):  # noqa: F811
    manager, client, auth, _, challenger = traffic_world(world)
    res = client.put(
        f"/v1/admin/models/{MODEL}/traffic", json={"shadow": "challenger"}, headers=auth
    )
    assert res.status_code == 200, res.text
    assert res.json()["shadow"] == {"ref": "challenger", "version": 2}
    ids = [3, 4, 5]
    bodies = [
        client.post(
            "/v1/score",
            json={"entity": {"borrower_id": i}, "fields": {"loan_amount": LOAN}},
            headers=auth,
        ).json()
        for i in ids
    ]
    manager.close()  # waits for the shadow worker
    assert all(b["model"]["version"] == 1 and b["role"] == "champion" for b in bodies)
    shadow_decisions = sum(
        manager.metrics.registry.get_sample_value(
            "lendml_decisions_total",
            {"model": MODEL, "version": "2", "role": "shadow", "decision": d},
        )
        or 0
        for d in ("approve", "refer", "decline")
    )
    assert shadow_decisions == 3
    by_role = defaultdict(dict)
    for record in world.sink.records:
        by_role[record.role][record.request_id] = record
    want = expected(challenger, ids)
    for i, body in zip(ids, bodies, strict=True):
        shadow = by_role["shadow"][body["request_id"]]
        assert shadow.version == 2
        assert shadow.score == pytest.approx(want[i], abs=1e-9)
        assert by_role["champion"][body["request_id"]].version == 1


def test_a_deployed_version_can_be_asked_for_by_name(world):  # noqa: F811
    manager, client, auth, _, challenger = traffic_world(world, shadow="challenger")
    body = {"entity": {"borrower_id": 9}, "fields": {"loan_amount": LOAN}}
    for model in (f"{MODEL}/2", f"{MODEL}@challenger"):
        res = client.post("/v1/score", json={**body, "model": model}, headers=auth).json()
        assert res["model"]["version"] == 2 and res["role"] == "shadow"
        assert res["score"] == pytest.approx(expected(challenger, [9])[9], abs=1e-9)
    res = client.post("/v1/score", json={**body, "model": f"{MODEL}@champion"}, headers=auth)
    assert res.json()["model"]["version"] == 1
    res = client.put(
        f"/v1/admin/models/{MODEL}/traffic", json={"shadow": "no-such-alias"}, headers=auth
    )
    assert res.status_code == 404
    assert client.get("/v1/models", headers=auth).json()["models"][MODEL]["shadow"]["version"] == 2
    manager.close()


def test_a_model_is_not_served_on_features_other_than_its_training_ones(world):  # noqa: F811
    lineage = {FEATURE_SERVICE_TAG: SERVICE.name, FEATURE_SERVICE_VERSION_TAG: "0123456789ab"}
    world.promote(world.register(fit_model(), lineage=lineage))
    manager = world.manager()
    with pytest.raises(ConfigError, match="trained on feature service 'credit_v1' version"):
        manager.start(watch=False)
    manager.close()


def test_a_declined_reference_point_is_served_with_a_warning(world, caplog):  # noqa: F811
    from tests.serving.online_world import model_metadata

    model = fit_model()
    world.promote(world.register(model, metadata=model_metadata(model, cutoff=0.95)))
    settings = ServingSettings(
        model=MODEL,
        watch_interval=0,
        models={MODEL: ModelServingSettings(decision={"approve_below": 0.1, "decline_from": 0.1})},
    )
    manager = world.manager(settings)
    manager.start(watch=False)
    assert "declines scoring below it get no reasons" in caplog.text
    keys = world.keys()
    token, _ = keys.create(scope="score")
    client = http_client(create_app(manager, keys=keys, sink=world.sink))
    items = [{"entity": {"borrower_id": i}, "fields": {"loan_amount": LOAN}} for i in range(1, 301)]
    res = client.post(
        "/v1/score:batch", json={"items": items}, headers={"Authorization": f"Bearer {token}"}
    )
    bare = [r for r in res.json()["results"] if r["decision"] == "decline" and not r["reasons"]]
    counted = manager.metrics.registry.get_sample_value(
        "lendml_declines_without_reasons_total", {"model": MODEL}
    )
    assert bare and counted == len(bare)
    manager.close()


def test_an_entity_keyed_by_several_columns_is_looked_up_by_all_of_them(world):  # noqa: F811
    from lendml.features.definitions import (
        Entity,
        Feature,
        FeatureService,
        FeatureView,
        Source,
    )
    from lendml.features.online import online_features, online_key
    from lendml.serving.lifecycle import ModelManager
    from lendml.stores import OnlineRecord
    from tests.serving.online_world import LOAN as LOAN_VIEW

    account = Entity("account", key=("bank_id", "account_no"))
    view = FeatureView(
        name="accounts",
        entity=account,
        source=Source.parquet("data/accounts.parquet", timestamp="ts"),
        features=[Feature(f) for f in ("income", "dti", "utilization", "home")],
    )
    service = FeatureService("accounts_v1", [view, LOAN_VIEW])
    row = {"income": 41000.0, "dti": 0.7, "utilization": 0.8, "home": "rent"}
    key = online_key(account, {"bank_id": "b1", "account_no": 7})
    world.store.write_batch("accounts", [OnlineRecord(key, row, 1)])
    model = fit_model()
    lineage = {FEATURE_SERVICE_TAG: service.name, FEATURE_SERVICE_VERSION_TAG: service.version}
    world.promote(world.register(model, lineage=lineage))
    manager = ModelManager(
        world.registry,
        settings=ServingSettings(model=MODEL, watch_interval=0),
        services={service.name: service}.__getitem__,
        store=world.store,
        root=world.root,
    )
    manager.start(watch=False)
    keys = world.keys()
    token, _ = keys.create(scope="score")
    client = http_client(create_app(manager, keys=keys))
    auth = {"Authorization": f"Bearer {token}"}
    entity = {"bank_id": "b1", "account_no": 7}
    res = client.post(
        "/v1/score", json={"entity": entity, "fields": {"loan_amount": LOAN}}, headers=auth
    )
    assert res.status_code == 200, res.text
    frame = online_features(world.store, service, [entity], request=[{"loan_amount": LOAN}])
    assert res.json()["score"] == pytest.approx(model.decision_function(frame[FEATURES])[0])
    res = client.post(
        "/v1/score",
        json={"entity": {"bank_id": "b1"}, "fields": {"loan_amount": LOAN}},
        headers=auth,
    )
    assert res.status_code == 422 and res.json()["field"] == "entity.account_no"
    res = client.post(
        "/v1/score",
        json={"entity": {"bank_id": "b2", "account_no": 7}, "fields": {"loan_amount": LOAN}},
        headers=auth,
    )
    assert res.status_code == 404
    manager.close()
