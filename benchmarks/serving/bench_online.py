"""Online scoring under load: `lendml serve`'s app against a minimal FastAPI floor.

One run builds a 500-tree x 63-leaf LightGBM model over 50 features (40 numeric, 10
categorical), registers and promotes it, materializes 10,000 borrowers into a SQLite
online store, then serves, one at a time, each in its own process on 127.0.0.1:

* ``lendml+reasons``  the lendml app, every request with ``explain: true`` (online lookup,
  checks, score, decision, top-4 reasons, metrics, prediction log);
* ``lendml``          the same app, reasons only for declines (the default);
* ``floor``           a minimal FastAPI app that reads the same SQLite row, encodes it and
  calls LightGBM's ``Booster.predict`` (no reasons, no checks, no log).

This process is the load generator: a keep-alive HTTP/1.1 client on asyncio (one
connection per concurrent user) sends single-applicant requests for random borrowers for
``--seconds`` per concurrency level (1, 8, 32) and reports requests/s and p50/p99 latency.
The two processes share the machine's 2 cores: the server gets one (its GIL), the load
generator the other.

    .venv/bin/python benchmarks/serving/bench_online.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
N_NUMERIC, N_CATEGORICAL, N_BORROWERS = 40, 10, 10_000
MODEL = "credit_pd"
LEVELS = (1, 8, 32)

FEATURES_PY = """
from lendml import Entity, Feature, FeatureService, FeatureView, Source

borrower = Entity("borrower", key="borrower_id")
profile = FeatureView(
    name="profile",
    entity=borrower,
    source=Source.parquet("data/profile.parquet", timestamp="ts"),
    features=[Feature(c) for c in {columns!r}],
)
credit = FeatureService("credit", [profile])
"""


# --------------------------------------------------------------------------- setup
def build(folder: Path, trees: int) -> None:
    """A project with the model as champion and the borrowers in the online store."""
    import pandas as pd

    from lendml.models import reference_point
    from lendml.models.lightgbm import LightGBMModel
    from lendml.project import Project
    from lendml.registry import FEATURE_SERVICE_TAG, FEATURE_SERVICE_VERSION_TAG
    from lendml.stores import OnlineRecord

    rng = np.random.default_rng(7)
    n = 12_000
    cols = {f"x{i}": rng.normal(size=n) for i in range(N_NUMERIC)}
    cols |= {f"c{i}": rng.choice(list("abcdefgh"), n) for i in range(N_CATEGORICAL)}
    frame = pd.DataFrame(cols)
    logit = frame["x0"] + 0.5 * frame["x1"] - 0.3 * frame["x2"] + (frame["c0"] == "a") - 1.0
    bad = (logit + rng.normal(size=n) > 0).astype(int)
    project = Project.init(folder)
    (folder / "features.py").write_text(FEATURES_PY.format(columns=list(frame.columns)))
    frame.assign(borrower_id=range(n), ts=pd.Timestamp("2026-01-01", tz="UTC")).to_parquet(
        folder / "data" / "profile.parquet"
    )
    project = Project(folder)
    project.apply(validate_data=False)
    service = project.get_feature_service("credit")
    t0 = time.perf_counter()
    model = LightGBMModel(
        n_estimators=trees, num_leaves=63, min_child_samples=20, early_stopping_rounds=0, n_jobs=2
    ).fit(frame, bad)
    print(f"trained {trees} trees in {time.perf_counter() - t0:.0f} s", flush=True)
    p_bad = model.predict_proba(frame)[:, 1]
    cutoff = float(np.quantile(p_bad, 0.8))
    ref = reference_point(model, frame, p_bad, cutoff=cutoff, side="below")
    tags = {FEATURE_SERVICE_TAG: service.name, FEATURE_SERVICE_VERSION_TAG: service.version}
    with project.tracker.start_run(run_name="bench", tags=tags) as run:
        run.log_model(model, metadata={"reference_point": ref.to_dict()})
    version = project.registry.register(run.run_id, MODEL).version
    project.registry.promote(MODEL, version, reason="benchmark", user="bench")
    records = [
        OnlineRecord(i, {c: frame[c].iat[i] for c in frame.columns}, 1) for i in range(N_BORROWERS)
    ]
    project.online_store.write_batch("profile", records)
    config = (folder / "lendml.yaml").read_text()
    (folder / "lendml.yaml").write_text(
        config + f"serving:\n  model: {MODEL}\n  watch_interval: 0\n  models:\n"
        f"    {MODEL}:\n      decision: {{approve_below: {cutoff}, decline_from: {cutoff}}}\n"
    )
    project.close()


# --------------------------------------------------------------------------- servers
class FloorBody(BaseModel):
    borrower_id: int


def serve_lendml(folder: Path, port: int) -> None:
    import uvicorn

    from lendml.project import Project
    from lendml.serving.app import create_app
    from lendml.serving.auth import KeyStore
    from lendml.serving.lifecycle import ModelManager

    project = Project(folder)
    sink = None
    if not os.environ.get("LENDML_BENCH_NO_LOG"):
        from lendml.serving.prediction_log import open_prediction_log

        sink = open_prediction_log(project.config.prediction_log, project.root)
    manager = ModelManager(
        project.registry,
        settings=project.config.serving,
        services=project.get_feature_service,
        store=project.online_store,
        root=project.root,
        sink=sink,
    )
    manager.start(watch=False)
    keys = KeyStore(folder / "data" / "api_keys.json")
    app = create_app(manager, keys=keys, sink=sink)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    manager.close()
    if sink is not None:
        sink.close(timeout=60)


def serve_floor(folder: Path, port: int) -> None:
    """The floor: the same SQLite row, encoded, scored by LightGBM; nothing else."""
    import sqlite3
    import threading

    import uvicorn
    from fastapi import FastAPI

    from lendml.core.config import load_config
    from lendml.registry import Registry

    config = load_config(folder)
    loaded = Registry(config.tracking, root=folder).load(f"{MODEL}@champion")
    booster = loaded.model.booster_
    specs = loaded.model.schema_.features
    lookups = [
        None if s.kind == "numeric" else {c: float(i) for i, c in enumerate(s.categories)}
        for s in specs
    ]
    names = [s.name for s in specs]
    local = threading.local()
    db = str(folder / "data" / "online.db")

    def con() -> sqlite3.Connection:
        if not hasattr(local, "con"):
            local.con = sqlite3.connect(db)
        return local.con

    app = FastAPI()

    @app.post("/score")
    async def score(body: FloorBody) -> dict[str, float]:  # in the loop, as lendml's
        row = (
            con()
            .execute(
                "SELECT payload FROM features WHERE view = ? AND entity_key = ?",
                ("profile", json.dumps(body.borrower_id)),
            )
            .fetchone()
        )
        values = json.loads(row[0])
        x = np.empty((1, len(names)))
        for j, (name, lookup) in enumerate(zip(names, lookups, strict=True)):
            v = values.get(name)
            x[0, j] = (
                np.nan if v is None else (float(v) if lookup is None else lookup.get(v, np.nan))
            )
        return {"probability": float(booster.predict(x)[0])}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def cpu_per_request(folder: Path, n: int = 300) -> list[dict]:
    """CPU time and wall time of one applicant scored in-process (no HTTP): the work a
    request costs the server, apart from the framework."""
    from lendml.project import Project
    from lendml.serving.inputs import ScoreInput
    from lendml.serving.lifecycle import ModelManager

    project = Project(folder)
    manager = ModelManager(
        project.registry,
        settings=project.config.serving,
        services=project.get_feature_service,
        store=project.online_store,
        root=project.root,
    )
    manager.start(watch=False)
    deployment = manager.routing().champion
    rows = []
    for explain in (True, False):
        wall, cpu = [], []
        for i in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            deployment.score([ScoreInput({"borrower_id": i}, {})], explain=explain)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        row = {
            "explain": explain,
            "cpu_ms_mean": 1000 * float(np.mean(cpu)),
            "wall_p50_ms": 1000 * float(np.percentile(wall, 50)),
            "wall_p99_ms": 1000 * float(np.percentile(wall, 99)),
        }
        rows.append(row)
        print(
            f"in-process, explain={explain!s:5s}: CPU {row['cpu_ms_mean']:.2f} ms/request, "
            f"wall p50 {row['wall_p50_ms']:.2f} ms, p99 {row['wall_p99_ms']:.2f} ms",
            flush=True,
        )
    manager.close()
    project.close()
    return rows


# --------------------------------------------------------------------------- load
def request_bytes(path: str, body: dict, key: str | None) -> bytes:
    payload = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def user(port: int, make: callable, until: float, lat: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(make())
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if b" 200 " not in status_line:
                errors.append(status_line)
    finally:
        writer.close()


async def load(port: int, make: callable, users: int, seconds: float) -> dict:
    lat: list[float] = []
    errors: list[bytes] = []
    warm_until = time.perf_counter() + 1.0
    await asyncio.gather(*(user(port, make, warm_until, [], []) for _ in range(users)))
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(user(port, make, until, lat, errors) for _ in range(users)))
    elapsed = time.perf_counter() - start
    ms = np.array(lat) * 1000
    return {
        "users": users,
        "requests": len(lat),
        "errors": len(errors),
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    for _ in range(3000):
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not listen")


def run_server(kind: str, label: str, folder: Path, make: callable, seconds: float) -> list[dict]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--dir", str(folder), "--port", str(port)],
        env=env,
    )
    try:
        wait_listening(port, proc)
        rows = []
        for users in LEVELS:
            rows.append({"server": label, **asyncio.run(load(port, make, users, seconds))})
            r = rows[-1]
            print(
                f"{label:15s} c={users:<3d} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}",
                flush=True,
            )
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="reuse a built project folder")
    parser.add_argument(
        "--cpu-only", action="store_true", help="only the in-process CPU time per request"
    )
    parser.add_argument("--serve", choices=["lendml", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "lendml":
        serve_lendml(args.dir, args.port)
        return
    if args.serve == "floor":
        serve_floor(args.dir, args.port)
        return
    tmp = None
    folder = args.dir
    if folder is None or not (folder / "lendml.yaml").exists():
        tmp = Path(tempfile.mkdtemp(prefix="lendml-bench-online-"))
        folder = folder or tmp / "project"
        build(folder, args.trees)
    cpu = cpu_per_request(folder)
    if args.cpu_only:
        print(json.dumps(cpu, indent=2))
        return
    from lendml.serving.auth import KeyStore

    key, _ = KeyStore(folder / "data" / "api_keys.json").create(scope="score", name="bench")
    rng = random.Random(1)

    def lendml_request(explain: bool) -> callable:
        def make() -> bytes:
            body = {"entity": {"borrower_id": rng.randrange(N_BORROWERS)}, "explain": explain}
            return request_bytes("/v1/score", body, key)

        return make

    def floor_request() -> bytes:
        return request_bytes("/score", {"borrower_id": rng.randrange(N_BORROWERS)}, None)

    rows = []
    rows += run_server("lendml", "lendml+reasons", folder, lendml_request(True), args.seconds)
    rows += run_server("lendml", "lendml", folder, lendml_request(False), args.seconds)
    rows += run_server("floor", "floor", folder, floor_request, args.seconds)
    floor = {r["users"]: r["rps"] for r in rows if r["server"] == "floor"}
    for r in rows:
        r["vs_floor"] = r["rps"] / floor[r["users"]]
    print(json.dumps(rows, indent=2))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
