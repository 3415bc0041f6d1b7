"""A small serving world for the online scoring tests: a feature service, an online store
with a few hundred borrowers, a registry, and helpers to register and promote models.

The fixtures are imported by the test modules that need them (``from
tests.serving.online_world import world``), so they do not depend on a shared conftest.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import uvicorn

from lendml.core.config import ServingSettings, TrackingSettings
from lendml.features.definitions import (
    Derived,
    DerivedView,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Source,
)
from lendml.models import reference_point
from lendml.models.lightgbm import LightGBMModel
from lendml.registry import FEATURE_SERVICE_TAG, FEATURE_SERVICE_VERSION_TAG, Registry, Tracker
from lendml.serving.auth import KeyStore
from lendml.serving.lifecycle import ModelManager
from lendml.serving.records import PredictionRecord, PredictionSink
from lendml.stores import OnlineRecord, create_online_store

MODEL = "credit_pd"
N_BORROWERS = 300
BORROWER = Entity("borrower", key="borrower_id")
PROFILE = FeatureView(
    name="profile",
    entity=BORROWER,
    source=Source.parquet("data/profile.parquet", timestamp="ts"),
    features=[Feature("income"), Feature("dti"), Feature("utilization"), Feature("home")],
)
LOAN = DerivedView(
    name="loan",
    features=[Derived("loan_to_income", "loan_amount / income")],
    request_fields={"loan_amount": "number"},
)
SERVICE = FeatureService("credit_v1", [PROFILE, LOAN])
FEATURES = ["income", "dti", "utilization", "home", "loan_to_income"]


def borrowers(n: int = N_BORROWERS, seed: int = 3) -> pd.DataFrame:
    """The borrowers' profile features (what the online store holds)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "borrower_id": np.arange(1, n + 1),
            "income": rng.lognormal(10.3, 0.5, n).round(0),
            "dti": rng.uniform(0, 0.9, n).round(3),
            "utilization": rng.uniform(0, 1, n).round(3),
            "home": rng.choice(["own", "rent", "mortgage"], n),
        }
    )


def training_frame(n: int = 1500, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.lognormal(10.3, 0.5, n),
            "dti": rng.uniform(0, 0.9, n),
            "utilization": rng.uniform(0, 1, n),
            "home": rng.choice(["own", "rent", "mortgage"], n),
        }
    )
    frame["loan_to_income"] = rng.uniform(1000, 40000, n) / frame["income"]
    logit = (
        -2.0
        + 3.0 * frame["dti"]
        + 1.5 * frame["utilization"]
        + 1.2 * frame["loan_to_income"]
        + 0.4 * (frame["home"] == "rent")
        + rng.normal(0, 0.5, n)
    )
    return frame, (logit > 0).astype(int).to_numpy()


def fit_model(n_trees: int = 8, seed: int = 11, num_leaves: int = 7) -> LightGBMModel:
    X, y = training_frame(seed=seed)
    return LightGBMModel(
        n_estimators=n_trees,
        num_leaves=num_leaves,
        min_child_samples=10,
        early_stopping_rounds=0,
        learning_rate=0.3,
        n_jobs=1,
        seed=seed,
    ).fit(X, y)


def model_metadata(
    model: LightGBMModel, *, cutoff: float = 0.35, protected: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What training stores with a model: its reference point (the average applicant
    approved just below ``cutoff``) and protected attributes."""
    X, _ = training_frame()
    p_bad = model.predict_proba(X)[:, 1]
    ref = reference_point(model, X, p_bad, cutoff=cutoff, side="below")
    return {"reference_point": ref.to_dict(), "protected": list(protected)}


class MemorySink(PredictionSink):
    """Keeps records in memory (thread-safe enough for list.append under the GIL)."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.closed = False

    def submit(self, record: PredictionRecord) -> None:
        self.records.append(record)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@dataclass
class World:
    root: Path
    registry: Registry
    tracker: Tracker
    store: Any
    sink: MemorySink = field(default_factory=MemorySink)

    def register(
        self,
        model: LightGBMModel,
        *,
        metadata: dict[str, Any] | None = None,
        lineage: dict[str, str] | None = None,
        name: str = MODEL,
    ) -> int:
        tags = (
            {FEATURE_SERVICE_TAG: SERVICE.name, FEATURE_SERVICE_VERSION_TAG: SERVICE.version}
            if lineage is None
            else lineage
        )
        meta = model_metadata(model) if metadata is None else metadata
        with self.tracker.start_run(run_name="train", tags=tags) as run:
            run.log_model(model, metadata=meta)
        return self.registry.register(run.run_id, name).version

    def promote(self, version: int, alias: str = "champion", name: str = MODEL) -> None:
        self.registry.promote(name, version, alias=alias, reason="test", user="tests")

    def manager(self, settings: ServingSettings | None = None, **kwargs: Any) -> ModelManager:
        settings = settings or ServingSettings(model=MODEL, watch_interval=0)
        services = {SERVICE.name: SERVICE}
        return ModelManager(
            self.registry,
            settings=settings,
            services=services.__getitem__,
            store=self.store,
            root=self.root,
            sink=self.sink,
            **kwargs,
        )

    def keys(self) -> KeyStore:
        return KeyStore(self.root / "data" / "api_keys.json")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """A migrated, empty MLflow database (creating one runs many migrations)."""
    root = tmp_path_factory.mktemp("serving-template")
    Registry(TrackingSettings(), root=root).list_models()
    return root / "data" / "mlflow.db"


def new_world(tmp_path: Path, template: Path) -> World:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, tmp_path / "data" / "mlflow.db")
    store = create_online_store("sqlite", path=str(tmp_path / "data" / "online.db"))
    rows = borrowers()
    records = [
        OnlineRecord(int(r.borrower_id), {f: getattr(r, f) for f in FEATURES[:4]}, 1_000_000)
        for r in rows.itertuples()
    ]
    store.write_batch(PROFILE.name, records)
    return World(
        root=tmp_path,
        registry=Registry(TrackingSettings(), root=tmp_path),
        tracker=Tracker(TrackingSettings(), root=tmp_path, default_experiment="serving"),
        store=store,
    )


@pytest.fixture
def world(tmp_path, mlflow_template) -> Iterator[World]:
    w = new_world(tmp_path, mlflow_template)
    yield w
    w.store.close()


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def http_client(app: Any) -> Any:
    """Starlette's TestClient (its import warns that httpx is deprecated there; the
    warning is about Starlette's choice of client, not about lendml)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


REASON_MAP = {
    "reasons": {
        "income": {"code": "R10", "text": "Income insufficient for amount of credit requested"},
        "burden": {
            "code": "R20",
            "text": "Debt and balances too high relative to income and limits",
        },
        "loan_to_income": {"code": "R30", "text": "Amount requested too high relative to income"},
        "home": {"code": "R40", "text": "Length or type of residence"},
    },
    "groups": {"dti": "burden", "utilization": "burden"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The app on a real uvicorn server on 127.0.0.1, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        ready = threading.Event()
        for _ in range(2000):  # up to ~20 s for the socket to listen
            if self.server.started:
                ready.set()
                break
            ready.wait(0.01)
        assert self.server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
