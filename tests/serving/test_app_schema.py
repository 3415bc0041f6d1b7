"""The OpenAPI schema: a committed snapshot, and a schemathesis run that finds no 5xx.

The snapshot makes every change of the API visible in review. After an intended change,
regenerate it with::

    LENDML_UPDATE_OPENAPI=1 .venv/bin/python -m pytest tests/serving/test_app_schema.py -n 0
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lendml.core.config import ServingSettings
from lendml.serving.app import create_app
from lendml.serving.auth import KeyStore
from lendml.serving.metrics import ServingMetrics
from tests.serving.online_world import (
    MODEL,
    fit_model,
    http_client,
    mlflow_template,  # noqa: F401 - fixture
    new_world,
)

SNAPSHOT = Path(__file__).with_name("openapi.json")


def test_the_openapi_schema_matches_the_snapshot(tmp_path):
    # The schema does not depend on the models served: a stand-in manager is enough.
    manager = SimpleNamespace(settings=ServingSettings(model=MODEL), metrics=ServingMetrics())
    app = create_app(manager, keys=KeyStore(tmp_path / "keys.json"))  # type: ignore[arg-type]
    current = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("LENDML_UPDATE_OPENAPI"):
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no snapshot: regenerate it (see {__name__}'s docstring)"
    assert current == SNAPSHOT.read_text(), (
        "The OpenAPI schema changed. If intended, regenerate tests/serving/openapi.json with "
        "LENDML_UPDATE_OPENAPI=1 .venv/bin/python -m pytest tests/serving/test_app_schema.py"
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory, mlflow_template):  # noqa: F811 - the imported fixture
    world = new_world(tmp_path_factory.mktemp("schemathesis"), mlflow_template)
    world.promote(world.register(fit_model()))
    world.promote(world.register(fit_model(seed=12)), alias="challenger")
    manager = world.manager()
    manager.start(watch=False)
    keys = world.keys()
    token, _ = keys.create(scope="admin")
    app = create_app(manager, keys=keys, sink=world.sink)
    http_client(app)  # imports Starlette's test client once, its deprecation warning muted
    yield SimpleNamespace(app=app, token=token)
    manager.close()
    world.store.close()


@pytest.fixture(scope="module")
def api_schema(service):
    auth = {"Authorization": f"Bearer {service.token}"}
    return schemathesis.openapi.from_asgi("/openapi.json", service.app, headers=auth)


CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_input_makes_the_service_fail(api_schema, service, mode):
    # Cases are drawn per operation with hypothesis directly: schemathesis' pytest
    # integration (from_fixture + parametrize) does not run under pytest 9.
    headers = {"Authorization": f"Bearer {service.token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (operation.body or operation.path_parameters):
            continue  # nothing to make invalid (e.g. GET /healthz)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        call()
