"""The scoring API over HTTP: decisions, reasons, the prediction log, bad input, limits."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lendml.core.config import (
    DecisionSettings,
    MissingSettings,
    ModelServingSettings,
    ReasonSettings,
    ServingSettings,
)
from lendml.serving.app import create_app
from tests.serving.online_world import (
    MODEL,
    REASON_MAP,
    World,
    borrowers,
    fit_model,
    http_client,
    mlflow_template,  # noqa: F401 - fixture
    new_world,
    write_json,
)

APPROVE_BELOW, DECLINE_FROM = 0.35, 0.65


@dataclass
class Served:
    world: World
    model: Any
    client: Any
    score_key: str
    admin_key: str

    def post(self, path: str, body: Any, *, key: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.score_key}", **kw.pop("headers", {})}
        return self.client.post(path, json=body, headers=headers, **kw)


def settings_for(**model: Any) -> ServingSettings:
    policy = ModelServingSettings(
        decision=DecisionSettings(approve_below=APPROVE_BELOW, decline_from=DECLINE_FROM),
        reasons=ReasonSettings(map="reasons.json", protected=("home",)),
        **model,
    )
    return ServingSettings(model=MODEL, watch_interval=0, max_batch=400, models={MODEL: policy})


@pytest.fixture(scope="module")
def served(tmp_path_factory, mlflow_template):  # noqa: F811 - the fixture above
    world = new_world(tmp_path_factory.mktemp("app"), mlflow_template)
    write_json(world.root / "reasons.json", REASON_MAP)
    model = fit_model()
    world.promote(world.register(model))
    manager = world.manager(settings_for())
    manager.start(watch=False)
    keys = world.keys()
    score_key, _ = keys.create(scope="score", name="web")
    admin_key, _ = keys.create(scope="admin", name="ops")
    client = http_client(create_app(manager, keys=keys, sink=world.sink))
    yield Served(world, model, client, score_key, admin_key)
    manager.close()
    world.store.close()


def expected_scores(model: Any, ids: list[int], loan_amount: float) -> np.ndarray:
    """The log-odds the model gives these borrowers, computed without the service."""
    frame = borrowers().set_index("borrower_id").loc[ids].reset_index(drop=True)
    frame["loan_to_income"] = loan_amount / frame["income"]
    return model.decision_function(
        frame[["income", "dti", "utilization", "home", "loan_to_income"]]
    )


def batch(served: Served, ids: list[int], loan_amount: float, **extra: Any) -> list[dict]:
    items = [{"entity": {"borrower_id": i}, "fields": {"loan_amount": loan_amount}} for i in ids]
    res = served.post("/v1/score:batch", {"items": items, **extra})
    assert res.status_code == 200, res.text
    return res.json()["results"]


# --------------------------------------------------------------------------- decisions
def test_one_applicant_is_scored_like_the_model_scores_it(served):
    res = served.post("/v1/score", {"entity": {"borrower_id": 17}, "fields": {"loan_amount": 9000}})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["model"] == {"name": MODEL, "version": 1}
    assert body["role"] == "champion"
    assert res.headers["x-request-id"] == body["request_id"]
    assert body["score"] == pytest.approx(expected_scores(served.model, [17], 9000)[0], abs=1e-12)
    assert body["probability"] == pytest.approx(1 / (1 + math.exp(-body["score"])), abs=1e-12)


def test_decisions_follow_the_cutoffs_and_declines_always_carry_reasons(served):
    ids = list(range(1, 301))
    results = batch(served, ids, 15000)
    decisions = {r["decision"] for r in results}
    assert decisions == {"approve", "refer", "decline"}  # the cutoffs split this population
    for r in results:
        p = r["probability"]
        want = "decline" if p >= DECLINE_FROM else "approve" if p < APPROVE_BELOW else "refer"
        assert r["decision"] == want
        if r["decision"] == "decline":
            assert 1 <= len(r["reasons"]) <= 4
        else:
            assert r["reasons"] == []  # reasons for approvals and refers only on request
    scores = expected_scores(served.model, ids, 15000)
    assert np.allclose([r["score"] for r in results], scores, atol=1e-12)


def test_reasons_on_request_use_the_map_groups_and_never_a_protected_attribute(served):
    results = batch(served, list(range(1, 301)), 15000, explain=True)
    codes = {"R10", "R20", "R30"}
    seen = set()
    for r in results:
        assert len(r["reasons"]) <= 4
        contributions = [reason["contribution"] for reason in r["reasons"]]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)  # adverse reasons only
        for reason in r["reasons"]:
            assert reason["code"] in codes
            assert (
                reason["text"]
                == REASON_MAP["reasons"][
                    {"R10": "income", "R20": "burden", "R30": "loan_to_income"}[reason["code"]]
                ]["text"]
            )
            assert "home" not in reason["features"]  # protected: never a reason
            seen.add(reason["code"])
            if reason["code"] == "R20":  # dti and utilization make one reason
                assert reason["features"] == ["dti", "utilization"]
        assert len({reason["code"] for reason in r["reasons"]}) == len(r["reasons"])
    assert "R20" in seen


def test_every_response_goes_to_the_prediction_log_with_its_features(served):
    sink = served.world.sink
    before = len(sink.records)
    res = served.post("/v1/score", {"entity": {"borrower_id": 5}, "fields": {"loan_amount": 30000}})
    body = res.json()
    results = batch(served, [1, 2, 3], 30000)
    new = sink.records[before:]
    assert len(new) == 4
    record = new[0]
    assert record.request_id == body["request_id"]
    assert (record.model, record.version, record.role) == (MODEL, 1, "champion")
    assert record.entity == {"borrower_id": 5}
    assert record.decision == body["decision"] and record.score == body["score"]
    row = borrowers().set_index("borrower_id").loc[5]
    assert record.features["income"] == row["income"]
    assert record.features["home"] == row["home"]
    assert record.features["loan_to_income"] == pytest.approx(30000 / row["income"])
    assert [r.request_id for r in new[1:]] == [r["request_id"] for r in results]
    if body["decision"] == "decline":
        assert [r["code"] for r in record.reasons] and all("text" in r for r in record.reasons)


# --------------------------------------------------------------------------- bad input
BAD = [
    ({"entity": {"borrower_id": 5}, "fields": {"loan_amount": "lots"}}, 422, "fields.loan_amount"),
    ({"entity": {"borrower_id": 5}, "fields": {}}, 422, "fields.loan_amount"),
    ({"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1, "x": 1}}, 422, "fields.x"),
    ({"entity": {}, "fields": {"loan_amount": 1}}, 422, "entity.borrower_id"),
    ({"entity": {"borrower_id": 5, "other": 1}, "fields": {"loan_amount": 1}}, 422, "entity.other"),
    ({"entity": {"borrower_id": 5.5}, "fields": {"loan_amount": 1}}, 422, "entity.borrower_id"),
    ({"entity": {"borrower_id": [1]}, "fields": {"loan_amount": 1}}, 422, "entity.borrower_id"),
    ({"entity": {"borrower_id": 2**70}, "fields": {"loan_amount": 1}}, 422, "entity.borrower_id"),
    ({"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1e300}}, 422, "fields.loan_amount"),
    ({"entity": {"borrower_id": 5}, "fields": {"loan_amount": 10**400}}, 422, "fields.loan_amount"),
    ({"entity": {"borrower_id": 5}, "fields": {"loan_amount": True}}, 422, "fields.loan_amount"),
    ({"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}, "extra": 1}, 422, "extra"),
    (
        {"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}, "explain": "yes"},
        422,
        "explain",
    ),
    ({"entity": {"borrower_id": 99999}, "fields": {"loan_amount": 1}}, 404, "entity"),
    ({"entity": {"borrower_id": "5"}, "fields": {"loan_amount": 1}}, 404, "entity"),
    ({"model": "other", "entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}}, 404, "model"),
    (
        {"model": f"{MODEL}/9", "entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}},
        404,
        "model",
    ),
    (
        {"model": f"{MODEL}@shadow", "entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}},
        404,
        "model",
    ),
    (
        {"model": "no such!", "entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}},
        422,
        "model",
    ),
    (
        {"model": f"{MODEL}/0", "entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}},
        422,
        "model",
    ),
    ([1, 2], 422, "body"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD, ids=[b[2] for b in BAD])
def test_bad_input_is_a_4xx_naming_the_field(served, body, status, field):
    res = served.post("/v1/score", body)
    assert res.status_code == status, res.text
    error = res.json()
    assert error["field"] == field
    assert field.split(".")[-1] in error["message"]
    assert error["request_id"] == res.headers["x-request-id"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"entity": {"borrower_id": 5}, "fields": {"loan_amount": NaN}}',
        b'{"entity": {"borrower_id": 5}, "fields": {"loan_amount": Infinity}}',
        b'{"entity": {"borrower_id": 5}, "fields": {"loan_amount": -Infinity}}',
    ],
)
def test_nan_and_infinity_are_refused(served, raw):
    res = served.client.post(
        "/v1/score",
        content=raw,
        headers={"Authorization": f"Bearer {served.score_key}", "content-type": "application/json"},
    )
    assert res.status_code == 422
    assert res.json()["field"] == "fields.loan_amount"
    assert "finite" in res.json()["message"]


def test_broken_json_and_a_wrong_content_type_are_422(served):
    headers = {"Authorization": f"Bearer {served.score_key}", "content-type": "application/json"}
    res = served.client.post("/v1/score", content=b'{"entity": ', headers=headers)
    assert res.status_code == 422 and res.json()["error"] == "RequestValidationError"
    headers["content-type"] = "text/plain"
    res = served.client.post("/v1/score", content=b"hello", headers=headers)
    assert res.status_code == 422


def test_a_batch_error_names_the_item(served):
    items = [{"entity": {"borrower_id": i}, "fields": {"loan_amount": 1000}} for i in (1, 2, 3)]
    items[2]["fields"]["loan_amount"] = "many"
    res = served.post("/v1/score:batch", {"items": items})
    assert res.status_code == 422
    assert res.json()["field"] == "items[2].fields.loan_amount"
    res = served.post("/v1/score:batch", {"items": []})
    assert res.status_code == 422 and res.json()["field"] == "items"
    too_many = [{"entity": {"borrower_id": 1}, "fields": {"loan_amount": 1}}] * 401
    res = served.post("/v1/score:batch", {"items": too_many})
    assert res.status_code == 422 and res.json()["field"] == "items"
    assert "400" in res.json()["message"]


def test_oversized_bodies_are_refused_with_413(served):
    headers = {"Authorization": f"Bearer {served.score_key}", "content-type": "application/json"}
    big = (
        b'{"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}, "model": "'
        + (b"x" * 2_000_000)
        + b'"}'
    )
    res = served.client.post("/v1/score", content=big, headers=headers)
    assert res.status_code == 413 and res.json()["error"] == "ContentTooLarge"

    def chunks():  # no content-length: counted as it streams
        yield b'{"model": "'
        for _ in range(30):
            yield b"x" * 50_000
        yield b'"}'

    res = served.client.post("/v1/score", content=chunks(), headers=headers)
    assert res.status_code == 413 and res.json()["error"] == "ContentTooLarge"


# --------------------------------------------------------------------------- keys
def test_every_endpoint_but_healthz_needs_a_key(served):
    c = served.client
    assert c.get("/healthz").status_code == 200
    for method, path in (
        ("post", "/v1/score"),
        ("post", "/v1/score:batch"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/v1/models"),
        ("post", "/v1/admin/reload"),
        ("get", "/openapi.json"),
    ):
        res = getattr(c, method)(path)
        assert res.status_code == 401, (path, res.text)
        assert res.headers["www-authenticate"] == "Bearer"
        res = getattr(c, method)(path, headers={"Authorization": "Bearer lmk_not-a-key"})
        assert res.status_code == 401, path
        res = getattr(c, method)(path, headers={"Authorization": served.score_key})  # no scheme
        assert res.status_code == 401, path
    ok = {"Authorization": f"Bearer {served.score_key}"}
    assert c.get("/readyz", headers=ok).json() == {"status": "ready"}
    assert c.get("/v1/models", headers=ok).json()["models"][MODEL]["champion"] == 1
    assert "/v1/score" in c.get("/openapi.json", headers=ok).json()["paths"]
    assert c.get("/docs").status_code == 404


def test_admin_endpoints_need_the_admin_scope(served):
    res = served.post("/v1/admin/reload", None)
    assert res.status_code == 403 and "admin" in res.json()["message"]
    res = served.post("/v1/admin/reload", None, key=served.admin_key)
    assert res.status_code == 200
    assert res.json()["models"][MODEL]["champion"] == 1
    # an admin key may also score
    res = served.post(
        "/v1/score",
        {"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}},
        key=served.admin_key,
    )
    assert res.status_code == 200


def test_a_revoked_key_stops_working_without_a_restart(served):
    keys = served.world.keys()
    token, key = keys.create(scope="score", name="temp")
    body = {"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}}
    assert served.post("/v1/score", body, key=token).status_code == 200
    keys.revoke(key.id)
    assert served.post("/v1/score", body, key=token).status_code == 401


def test_feature_values_and_keys_stay_out_of_the_application_log(served, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"entity": {"borrower_id": 271}, "fields": {"loan_amount": 31415.926}}
    served.post("/v1/score", body)
    served.post("/v1/score", {**body, "fields": {"loan_amount": "31415.926x"}})
    served.post("/v1/score", {**body, "entity": {"borrower_id": 987654}})
    served.post("/v1/score", body, key="lmk_secret-looking-token")
    income = str(borrowers().set_index("borrower_id").loc[271, "income"])
    for secret in ("31415.926", "987654", income, served.score_key, "lmk_secret-looking-token"):
        assert secret not in caplog.text
    res = served.post("/v1/score", {**body, "fields": {"loan_amount": "31415.926x"}})
    assert "31415" not in res.text  # nor echoed in error messages


# --------------------------------------------------------------------------- metrics
def test_metrics_count_requests_decisions_missing_inputs_and_the_version(served):
    batch(served, [1, 2, 3, 4], 12000)
    served.post("/v1/score", {"entity": {"borrower_id": 5}, "fields": {"loan_amount": None}})
    text = served.client.get(
        "/metrics", headers={"Authorization": f"Bearer {served.score_key}"}
    ).text
    assert 'lendml_model_version{model="credit_pd",role="champion"} 1.0' in text
    assert 'lendml_requests_total{endpoint="/v1/score:batch",status="200"}' in text
    assert 'lendml_request_duration_seconds_bucket{endpoint="/v1/score",le=' in text
    assert 'lendml_decisions_total{decision="' in text or "lendml_decisions_total{model=" in text
    assert 'lendml_score_probability_bucket{le="0.05",model="credit_pd",role="champion"}' in text
    # loan_amount null → loan_to_income missing (and allowed by the default rule)
    assert 'lendml_feature_missing_total{feature="loan_to_income",model="credit_pd"}' in text
    assert "borrower_id" not in text


# --------------------------------------------------------------------------- policies
def served_with(world: World, policy: dict[str, Any]) -> Any:
    manager = world.manager(settings_for(**policy))
    manager.start(watch=False)
    keys = world.keys()
    token, _ = keys.create(scope="score")
    client = http_client(create_app(manager, keys=keys, sink=world.sink))
    return manager, client, {"Authorization": f"Bearer {token}"}


def test_unknown_entities_can_be_scored_with_the_missing_value_rules(served):
    manager, client, auth = served_with(
        served.world,
        {
            "unknown_entity": "score",
            "missing": MissingSettings(features={"income": 40000.0, "dti": "reject"}),
        },
    )
    try:
        body = {"entity": {"borrower_id": 424242}, "fields": {"loan_amount": 8000}}
        res = client.post("/v1/score", json=body, headers=auth)
        assert res.status_code == 422
        assert res.json()["field"] == "features.dti"  # missing, and the rule rejects it
    finally:
        manager.close()
    manager, client, auth = served_with(
        served.world,
        {"unknown_entity": "score", "missing": MissingSettings(features={"income": 40000.0})},
    )
    try:
        sink = served.world.sink
        before = len(sink.records)
        res = client.post("/v1/score", json=body, headers=auth)
        assert res.status_code == 200, res.text
        record = sink.records[before]
        assert record.features["income"] == 40000.0  # filled by the rule
        assert record.features["dti"] is None  # allowed missing: the model's own handling
        assert record.features["loan_to_income"] is None  # derived from a missing income
    finally:
        manager.close()


def test_ranges_refuse_values_outside_them(served):
    frame = borrowers()
    high = int(frame.loc[frame["dti"] > 0.6, "borrower_id"].iloc[0])
    low = int(frame.loc[frame["dti"] < 0.4, "borrower_id"].iloc[0])
    manager, client, auth = served_with(served.world, {"ranges": {"dti": (0.0, 0.5)}})
    try:
        ok = client.post(
            "/v1/score",
            json={"entity": {"borrower_id": low}, "fields": {"loan_amount": 1}},
            headers=auth,
        )
        assert ok.status_code == 200
        res = client.post(
            "/v1/score",
            json={"entity": {"borrower_id": high}, "fields": {"loan_amount": 1}},
            headers=auth,
        )
        assert res.status_code == 422
        assert res.json()["field"] == "features.dti" and "range" in res.json()["message"]
    finally:
        manager.close()


def test_probabilities_and_reasons_are_plain_json_numbers(served):
    results = batch(served, list(range(1, 50)), 20000, explain=True)
    frame = pd.DataFrame(results)
    assert frame["probability"].between(0, 1).all()
    assert all(isinstance(r["contribution"], float) for rs in frame["reasons"] for r in rs)


def test_the_service_reads_what_online_features_reads_and_encodes_like_the_schema(served):
    from lendml.features.online import online_features
    from lendml.stores import OnlineRecord
    from tests.serving.online_world import FEATURES, PROFILE, SERVICE

    store = served.world.store
    odd = {"income": None, "dti": 0.5, "utilization": 2, "home": "boat"}  # unseen category
    store.write_batch(PROFILE.name, [OnlineRecord(5000, odd, 2_000_000)])
    ids, loans = [5000, 7, 8, 9], [12000, 0, 3.5, None]
    sink = served.world.sink
    before = len(sink.records)
    for i, loan in zip(ids, loans, strict=True):
        res = served.post(
            "/v1/score", {"entity": {"borrower_id": i}, "fields": {"loan_amount": loan}}
        )
        assert res.status_code == 200, res.text
    records = sink.records[before:]
    for i, loan, record in zip(ids, loans, records, strict=True):
        frame = online_features(
            store, SERVICE, [{"borrower_id": i}], request=[{"loan_amount": loan}]
        )
        want = {f: frame[f].iloc[0] for f in FEATURES}
        got = record.features
        for f in FEATURES:
            if want[f] is None or (isinstance(want[f], float) and math.isnan(want[f])):
                assert got[f] is None, (i, f)
            else:
                assert got[f] == want[f], (i, f)
        score = served.model.decision_function(frame[FEATURES])[0]
        assert record.score == pytest.approx(score, abs=1e-12)


def test_readyz_is_503_until_the_champion_is_deployed(served):
    manager = served.world.manager(settings_for())  # not started
    keys = served.world.keys()
    token, _ = keys.create(scope="score")
    client = http_client(create_app(manager, keys=keys))
    auth = {"Authorization": f"Bearer {token}"}
    res = client.get("/readyz", headers=auth)
    assert res.status_code == 503 and res.json()["error"] == "NotReady"
    assert client.get("/healthz").status_code == 200
    body = {"entity": {"borrower_id": 5}, "fields": {"loan_amount": 1}}
    res = client.post("/v1/score", json=body, headers=auth)
    assert res.status_code == 404 and "not deployed yet" in res.json()["message"]
    manager.start(watch=False)
    assert client.get("/readyz", headers=auth).status_code == 200
    assert client.post("/v1/score", json=body, headers=auth).status_code == 200
    manager.close()
