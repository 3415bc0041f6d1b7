"""One pass of the continuous-learning loop: refresh → triggers → retrain → gate → promote.

A pass runs for one as-of time (default: now, floored to ``loop.every``) and one model:

1. ``start``     the champion at the start of the pass (read once: a resumed pass compares
                 against the same champion even after it promoted)
2. ``refresh``   incremental materialization of the service's views up to the as-of time
3. ``dataset``   the newest point-in-time training set: spine rows up to the as-of time,
                 labels observed by then, out-of-time windows ending at the newest mature
                 label (``loop.window``)
4. ``triggers``  schedule, drift of the champion's served decisions, realised decay of the
                 champion on the newest mature window, newly mature labels
5. ``train``     the challenger on that set, tuning warm-started from the champion
6. ``evaluate``  champion and challenger scored on the same newest out-of-time rows
7. ``gate``      :func:`lendml.pipelines.gate.gate`
8. ``register``  the challenger as a new version (idempotent per run)
9. ``promote``   champion alias moved (or the shadow alias, and the champion after
                 ``loop.shadow``); serving hot-swaps by itself

Every step's output is recorded under a key derived from its inputs
(:class:`~lendml.pipelines.state.LoopState`); running the same pass again — after a kill
at any point, or twice from cron — reads finished steps back instead of redoing them, and
the registry's promotion is idempotent, so a pass never promotes twice. Every decision is
appended to the audit log with its evidence. Any failure to read the registry or to
evaluate ends the pass without promoting (fails closed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lendml.core.config import LoopSettings
from lendml.core.timeutil import parse_duration, to_utc_timestamp
from lendml.errors import ConfigError, LendmlError, ModelNotFound
from lendml.evaluation import Bins, jsonable
from lendml.pipelines.gate import gate
from lendml.pipelines.state import LoopState, content_key

STEPS = (
    "start",
    "refresh",
    "dataset",
    "triggers",
    "train",
    "evaluate",
    "gate",
    "register",
    "promote",
)
LOOP_USER = "lendml-loop"
# Fault injection for resilience drills and the kill-at-every-step test:
# LENDML_LOOP_CRASH_AT=<step> ends the process abruptly after the step's work is done
# and before its record is written (the worst moment to die).
CRASH_ENV = "LENDML_LOOP_CRASH_AT"

Progress = Callable[[str, str], None]


@dataclass
class PassResult:
    """What one pass did: its status, each step's recorded output, what was reused."""

    pass_id: str
    model: str
    as_of: pd.Timestamp
    status: str  # no_trigger | rejected | promoted | shadow | shadow_pending
    summary: str
    steps: dict[str, Any] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "pass_id": self.pass_id,
                "model": self.model,
                "as_of": self.as_of.isoformat(),
                "status": self.status,
                "summary": self.summary,
                "steps": self.steps,
                "reused": self.reused,
                "timings_seconds": self.timings,
            }
        )


def floor_as_of(as_of: Any, every: str) -> pd.Timestamp:
    """``as_of`` (default now, UTC) floored to the loop period (at least a second)."""
    ts = to_utc_timestamp(as_of) if as_of is not None else pd.Timestamp.now(tz="UTC")
    period = parse_duration(every)
    if period >= timedelta(days=1):
        return ts.floor("D")
    return ts.floor(pd.Timedelta(period))


def _maybe_crash(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os._exit(137)


class _Pass:
    """The working state of one pass (kept out of the public API)."""

    def __init__(
        self, project: Any, settings: LoopSettings, as_of: pd.Timestamp, progress: Progress | None
    ) -> None:
        self.project = project
        self.settings = settings
        self.as_of = as_of
        self.progress = progress or (lambda step, text: None)
        self.state = LoopState(project.resolve_path(settings.state))
        self.config = project.train_config(settings.train_config)
        self.model = settings.model or self.config.name
        config_text = self.config.model_dump_json()
        self.pass_id = content_key(
            "pass", self.model, as_of.isoformat(), settings.model_dump(mode="json"), config_text
        )
        self.outputs: dict[str, Any] = {}
        self.reused: list[str] = []
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ bookkeeping

    def run_step(self, step: str, inputs: Any, work: Callable[[], dict[str, Any]]) -> dict:
        import time

        key = content_key(self.pass_id, step, inputs)
        found = self.state.read_step(step, key)
        t0 = time.perf_counter()
        if found is None:
            self.progress(step, "running")
            found = work()
            _maybe_crash(step)
            self.state.write_step(step, key, found)
        else:
            self.reused.append(step)
            self.progress(step, "reused")
        self.timings[step] = round(time.perf_counter() - t0, 3)
        self.outputs[step] = found
        self.audit(step, found)
        return found

    def audit(self, step: str, output: Mapping[str, Any]) -> None:
        entry = {
            "id": f"{self.pass_id}:{step}",
            "pass_id": self.pass_id,
            "model": self.model,
            "as_of": self.as_of.isoformat(),
            "step": step,
            "decision": output.get("decision"),
            "summary": output.get("summary"),
            "evidence": {k: v for k, v in output.items() if k not in ("decision", "summary")},
        }
        self.state.audit(jsonable(entry))

    def step_file(self, step: str, suffix: str) -> Path:
        return self.state.steps / f"{step}-{self.pass_id}{suffix}"

    # ------------------------------------------------------------------ steps

    def start(self) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            reg = self.project.registry
            try:
                info = reg.resolve(f"{self.model}@champion")
            except ModelNotFound as exc:
                raise ConfigError(
                    f"Model {self.model!r} has no champion; the loop compares challengers "
                    f"with one. Train, register and promote a first version "
                    f"(`lendml models promote {self.model} VERSION --reason TEXT`). ({exc})"
                ) from exc
            run = self.project.tracker.get_run(info.run_id) if info.run_id else None
            windows = json.loads(info.tags.get("lendml.data_windows", "{}") or "{}")
            data_end = (windows.get("test") or {}).get("until")
            return {
                "decision": "started",
                "summary": f"champion {info.ref}",
                "champion_version": info.version,
                "champion_run_id": info.run_id,
                "champion_test_auc": (run.metrics.get("auc") if run else None),
                "champion_test_n": (run.metrics.get("test_n") if run else None),
                "champion_test_bad_rate": (run.metrics.get("test_bad_rate") if run else None),
                "champion_data_end": data_end,
                "champion_params": _champion_params(run),
            }

        return self.run_step("start", [], work)

    def refresh(self) -> dict[str, Any]:
        svc = self.project.get_feature_service(self.config.feature_service)
        views = [v.name for v in svc.feature_views]
        sources = self.project.source_fingerprints(svc)

        def work() -> dict[str, Any]:
            state = self.project.materialization_state()
            ends = [
                to_utc_timestamp(state[v]["latest_end"])
                for v in views
                if v in state and state[v].get("latest_end")
            ]
            period = pd.Timedelta(parse_duration(self.settings.every))
            start = min(ends) if len(ends) == len(views) else self.as_of - period
            if start >= self.as_of:
                return {
                    "decision": "refreshed",
                    "summary": f"features already materialized to {start:%Y-%m-%d %H:%M}",
                    "start": start.isoformat(),
                    "end": self.as_of.isoformat(),
                    "views": {},
                }
            report = self.project.materialize(start=start, end=self.as_of, views=views)
            return {
                "decision": "refreshed",
                "summary": (
                    f"materialized {', '.join(views)} over ({start:%Y-%m-%d}, "
                    f"{self.as_of:%Y-%m-%d}]"
                ),
                "start": start.isoformat(),
                "end": self.as_of.isoformat(),
                "views": report.views,
            }

        return self.run_step("refresh", sources, work)

    def derived_config(self, windows: Mapping[str, Any], spine_path: Path) -> Any:
        cfg = self.config
        split = cfg.split.model_copy(
            update={
                "kind": "out_of_time",
                "train_from": windows["train_from"],
                "valid_from": windows["valid_from"],
                "test_from": windows["test_from"],
                "test_until": windows["test_until"],
                "labels_known_at": "cutoff",
                "folds": 0,
            }
        )
        label = cfg.label.model_copy(update={"cutoff": self.as_of.isoformat()})
        update: dict[str, Any] = {"split": split, "label": label, "spine": str(spine_path)}
        if self.settings.trials is not None:
            update["tuning"] = cfg.tuning.model_copy(update={"trials": self.settings.trials})
        return cfg.model_copy(update=update)

    def dataset(self) -> dict[str, Any]:
        from lendml.features.training_set import read_spine
        from lendml.training.data import file_fingerprint

        cfg = self.config
        spine_src = Path(self.project.resolve_path(cfg.spine))
        inputs = [
            file_fingerprint(spine_src),
            self.project.source_fingerprints(cfg.feature_service),
            self.project.get_feature_service(cfg.feature_service).version,
        ]

        def work() -> dict[str, Any]:
            spine = read_spine(str(spine_src), as_of=cfg.as_of).to_pandas()
            times = pd.to_datetime(spine[cfg.as_of], utc=True)
            spine = spine[times <= self.as_of].reset_index(drop=True)
            windows = newest_windows(spine, cfg, self.as_of, self.settings)
            path = self.step_file("dataset", ".spine.parquet")
            _write_parquet(spine, path)
            derived = self.derived_config(windows, path)
            data = self.project.service_frame(derived)
            frame_path = self.step_file("dataset", ".frame.parquet")
            _write_parquet(data.frame, frame_path)
            return {
                "decision": "built",
                "summary": (
                    f"{len(data.frame):,} spine rows up to {self.as_of:%Y-%m-%d}; test window "
                    f"{windows['test_from'][:10]} – {windows['test_until'][:10]}"
                ),
                "windows": windows,
                "rows": len(data.frame),
                "spine": str(path),
                "frame": str(frame_path),
                "service": {
                    "feature_names": list(data.feature_names),
                    "service": data.service,
                    "service_version": data.service_version,
                    "fingerprint": data.fingerprint,
                    "immature_labels": data.immature_labels,
                    "spine_fingerprint": data.spine_fingerprint,
                    "sources": dict(data.sources),
                },
            }

        return self.run_step("dataset", inputs, work)

    def service_frame(self) -> Any:
        from lendml.training.run import ServiceFrame

        out = self.outputs["dataset"]
        frame = pd.read_parquet(out["frame"])
        meta = out["service"]
        return ServiceFrame(
            frame=frame,
            feature_names=tuple(meta["feature_names"]),
            service=meta["service"],
            service_version=meta["service_version"],
            fingerprint=meta["fingerprint"],
            immature_labels=meta["immature_labels"],
            spine_fingerprint=meta["spine_fingerprint"],
            sources=meta["sources"],
        )

    def config_for_pass(self) -> Any:
        out = self.outputs["dataset"]
        return self.derived_config(out["windows"], Path(out["spine"]))

    def test_rows(self) -> tuple[pd.DataFrame, np.ndarray]:
        """The newest out-of-time window of the pass: its rows and their 0/1 labels."""
        from lendml.training.run import split_service_frame
        from lendml.training.trainer import binary_target

        data = self.service_frame()
        cfg = self.config_for_pass()
        y = binary_target(data.frame[cfg.label.column], cfg.label.positive)
        split = split_service_frame(data, cfg, y)
        return data.frame.iloc[split.test].reset_index(drop=True), y[split.test]

    def triggers(self) -> dict[str, Any]:
        start = self.outputs["start"]
        inputs = [self.outputs["dataset"]["service"]["fingerprint"], start["champion_version"]]

        def work() -> dict[str, Any]:
            t = self.settings.triggers
            found: list[dict[str, Any]] = []
            windows = self.outputs["dataset"]["windows"]
            newest = to_utc_timestamp(windows["test_until"])
            data_end = start.get("champion_data_end")
            if t.schedule:
                due = parse_duration(t.schedule)
                age = newest - to_utc_timestamp(data_end) if data_end else None
                found.append(
                    {
                        "trigger": "schedule",
                        "fired": age is None or age >= due,
                        "value_days": age.days if age is not None else None,
                        "threshold_days": due.days,
                        "detail": (
                            f"champion's data ends {data_end[:10]}, newest mature label "
                            f"{newest:%Y-%m-%d}: {age.days} days (retrain at {due.days})"
                            if age is not None
                            else "champion's data window unknown"
                        ),
                    }
                )
            if t.drift:
                found.append(self.drift_trigger())
            if t.decay_auc_drop is not None:
                found.append(self.decay_trigger())
            if t.mature_labels:
                found.append(self.labels_trigger(data_end))
            fired = [f["trigger"] for f in found if f["fired"]]
            return {
                "decision": "fired" if fired else "quiet",
                "summary": (
                    "fired: " + ", ".join(fired)
                    if fired
                    else "no trigger fired: " + "; ".join(f["detail"] for f in found)
                ),
                "fired": fired,
                "triggers": found,
            }

        return self.run_step("triggers", inputs, work)

    def drift_trigger(self) -> dict[str, Any]:
        from lendml.evaluation.drift import SCORE
        from lendml.monitoring.drift import drift_reference_of, log_drift
        from lendml.serving.prediction_log import read_prediction_log

        t = self.settings.triggers
        version = self.outputs["start"]["champion_version"]
        begin = self.as_of - pd.Timedelta(parse_duration(t.drift_window))
        base = {"trigger": "drift", "window": [begin.isoformat(), self.as_of.isoformat()]}
        try:
            log = read_prediction_log(
                self.project.config.prediction_log,
                self.project.root,
                start=begin,
                end=self.as_of,
                model=self.model,
            )
        except LendmlError as exc:
            return {**base, "fired": False, "detail": f"prediction log not readable: {exc}"}
        if log.empty:
            return {**base, "fired": False, "detail": "no served decision in the window"}
        loaded = self.project.registry.load(f"{self.model}/{version}")
        reference = drift_reference_of(loaded.model)
        # one window: the whole drift window is stamped with its start
        log = log.assign(time=begin)
        try:
            table = log_drift(
                log, reference, version=version, every="D", rules=self.project.config.monitoring
            )
        except LendmlError as exc:
            return {**base, "fired": False, "detail": f"no drift measured: {exc}"}
        alerts = table[table["alert"]]
        names = ["score" if v == SCORE else str(v) for v in alerts["variable"]]
        ranked = table.sort_values("psi", ascending=False)
        return {
            **base,
            "fired": bool(len(alerts)),
            "rows": int(table["n"].max()) if len(table) else 0,
            "alerts": names,
            "psi": {
                ("score" if r.variable == SCORE else str(r.variable)): {
                    "psi": float(r.psi),
                    "noise_floor": float(r.psi_noise_floor),
                    "alert": bool(r.alert),
                }
                for r in ranked.itertuples()
            },
            "detail": (
                f"drift alerts on {', '.join(names[:6])}" + (" …" if len(names) > 6 else "")
                if names
                else f"no drift alert over {int(table['n'].max()):,} served decisions"
            ),
        }

    def decay_trigger(self) -> dict[str, Any]:
        from lendml.evaluation import auc_delong

        t = self.settings.triggers
        start = self.outputs["start"]
        base = {"trigger": "decay", "threshold": t.decay_auc_drop}
        reference = start.get("champion_test_auc")
        frame, y = self.test_rows()
        if reference is None:
            return {**base, "fired": False, "detail": "champion's test AUC unknown"}
        if len(y) < t.min_labels or y.sum() < 2 or y.sum() > len(y) - 2:
            return {
                **base,
                "fired": False,
                "rows": len(y),
                "detail": f"{len(y)} mature labels in the newest window (< {t.min_labels})",
            }
        champion = self.project.registry.load(f"{self.model}/{start['champion_version']}")
        p = score_frame(champion.model, frame)
        # The drop must be larger than the threshold AND significant. Both AUCs are
        # estimates on different rows (the training test window and the newest window), so
        # the test uses both standard errors: z = drop / sqrt(se_ref² + se_now²), one-sided
        # at 5%. A rule on the point estimates, or on one interval only, fires on noise when
        # a window holds a few dozen bads (seen in the simulation: a 0.83 test AUC on 28
        # bads "decayed" to 0.77).
        result = auc_delong(y, p)
        auc = float(result.auc)
        drop = float(reference) - auc
        se_ref = _hanley_mcneil_se(
            float(reference), start.get("champion_test_n"), start.get("champion_test_bad_rate")
        )
        se = float(np.hypot(se_ref, result.se)) if np.isfinite(se_ref) else float("nan")
        z = drop / se if se > 0 else float("nan")
        significant = bool(np.isfinite(z) and z > 1.6449)
        return {
            **base,
            "fired": drop > t.decay_auc_drop and significant,
            "rows": len(y),
            "realised_auc": auc,
            "realised_auc_se": float(result.se),
            "champion_test_auc": float(reference),
            "champion_test_auc_se": se_ref,
            "z": z,
            "detail": (
                f"champion AUC {auc:.4f} on the newest {len(y):,} mature labels vs "
                f"{float(reference):.4f} at training (drop {drop:+.4f}, z={z:.2f}; retrain "
                f"when above {t.decay_auc_drop} and z > 1.645)"
            ),
        }

    def labels_trigger(self, data_end: str | None) -> dict[str, Any]:
        t = self.settings.triggers
        frame = pd.read_parquet(self.outputs["dataset"]["frame"])
        cfg = self.config
        times = pd.to_datetime(frame[cfg.as_of], utc=True)
        labelled = frame[cfg.label.column].notna().to_numpy()
        after = times > to_utc_timestamp(data_end) if data_end else np.ones(len(frame), bool)
        n = int((labelled & np.asarray(after)).sum())
        return {
            "trigger": "labels",
            "fired": n >= (t.mature_labels or 0),
            "value": n,
            "threshold": t.mature_labels,
            "detail": (
                f"{n:,} labels matured after the champion's data (retrain at {t.mature_labels:,})"
            ),
        }

    def train(self) -> dict[str, Any]:
        from lendml.training.run import train_service_frame

        start = self.outputs["start"]
        inputs = [self.outputs["dataset"]["service"]["fingerprint"], start["champion_params"]]

        def work() -> dict[str, Any]:
            cfg = self.config_for_pass()
            result = train_service_frame(
                self.service_frame(),
                cfg,
                tracker=self.project.tracker,
                project=self.project.config.name,
                report_dir=self.project.root / "reports" / "loop" / self.pass_id,
                recipe_extra={"project": str(self.project.root), "loop_pass": self.pass_id},
                warm_start=start["champion_params"] or None,
            )
            return {
                "decision": "trained",
                "summary": f"challenger run {result.run_id}: test AUC {result.auc:.4f}",
                "run_id": result.run_id,
                "test_auc": result.auc,
                "split": result.split,
                "report": str(result.report_dir / "report.html") if result.report_dir else None,
            }

        return self.run_step("train", inputs, work)

    def evaluate(self) -> dict[str, Any]:
        start = self.outputs["start"]
        run_id = self.outputs["train"]["run_id"]
        inputs = [run_id, start["champion_version"]]

        def work() -> dict[str, Any]:
            frame, y = self.test_rows()
            champion = self.project.registry.load(f"{self.model}/{start['champion_version']}")
            challenger = _load_run_model(self.project, run_id)
            p_old = score_frame(champion.model, frame)
            p_new = score_frame(challenger, frame)
            cols = {"y": y, "champion": p_old, "challenger": p_new}
            for c in self.config.protected:
                if c in frame.columns:
                    cols[f"protected.{c}"] = frame[c].astype("string").to_numpy()
            scores = pd.DataFrame(cols)
            path = self.step_file("evaluate", ".scores.parquet")
            _write_parquet(scores, path)
            refs = [_score_bins(m) for m in (champion.model, challenger)]
            return {
                "decision": "scored",
                "summary": f"champion and challenger scored on {len(y):,} out-of-time rows",
                "rows": len(y),
                "bads": int(y.sum()),
                "scores": str(path),
                "score_references": refs if all(refs) else None,
            }

        return self.run_step("evaluate", inputs, work)

    def cutoff(self) -> float | None:
        models = self.project.config.serving.models
        if self.model in models:
            return models[self.model].decision.approve_below
        return self.config.evaluation.cutoff

    def gate(self) -> dict[str, Any]:
        fired = self.outputs["triggers"]["fired"]
        inputs = [self.outputs["evaluate"]["scores"], fired, self.cutoff()]

        def work() -> dict[str, Any]:
            scores = pd.read_parquet(self.outputs["evaluate"]["scores"])
            prot = [c for c in scores.columns if c.startswith("protected.")]
            protected = (
                scores[prot].rename(columns=lambda c: c.removeprefix("protected."))
                if prot
                else None
            )
            refs = self.outputs["evaluate"].get("score_references")
            result = gate(
                scores["y"],
                scores["champion"],
                scores["challenger"],
                settings=self.settings.gate,
                triggers=fired,
                protected=protected,
                cutoff=self.cutoff(),
                score_references=(
                    (Bins.from_dict(refs[0]), Bins.from_dict(refs[1])) if refs else None
                ),
            )
            return {
                "decision": "passed" if result.passed else "failed",
                **result.to_dict(),
            }

        return self.run_step("gate", inputs, work)

    def register(self) -> dict[str, Any]:
        run_id = self.outputs["train"]["run_id"]

        def work() -> dict[str, Any]:
            info = self.project.registry.register(
                run_id,
                self.model,
                description=f"loop pass {self.pass_id} as of {self.as_of:%Y-%m-%d}",
            )
            return {
                "decision": "registered",
                "summary": f"registered {info.ref}",
                "version": info.version,
            }

        return self.run_step("register", [run_id], work)

    def promote(self) -> dict[str, Any]:
        version = self.outputs["register"]["version"]
        shadow = self.settings.shadow

        def work() -> dict[str, Any]:
            reg = self.project.registry
            reason = (
                f"loop pass {self.pass_id} as of {self.as_of:%Y-%m-%d}: "
                f"triggers {', '.join(self.outputs['triggers']['fired'])}; gate "
                + self.outputs["gate"]["summary"][:300]
            )
            if shadow:
                event = reg.promote(
                    self.model, version, alias="shadow", reason=reason, user=LOOP_USER
                )
                until = self.as_of + pd.Timedelta(parse_duration(shadow))
                return {
                    "decision": "shadow",
                    "summary": f"{self.model}/{version} serves in shadow until {until:%Y-%m-%d}",
                    "version": version,
                    "promote_after": until.isoformat(),
                    "event": event.to_dict(),
                }
            event = reg.promote(
                self.model, version, alias="champion", reason=reason, user=LOOP_USER
            )
            return {
                "decision": "promoted",
                "summary": f"{self.model}/{version} is the champion",
                "version": version,
                "previous_version": self.outputs["start"]["champion_version"],
                "event": event.to_dict(),
            }

        return self.run_step("promote", [version, shadow], work)

    def pending_shadow(self) -> dict[str, Any] | None:
        """The newest shadow start of an earlier pass that no promotion has followed."""
        moves = [
            e
            for e in self.state.history()
            if e.get("model") == self.model
            and e.get("step") in ("promote", "promote_shadow")
            and e.get("pass_id") != self.pass_id
        ]
        if not moves or moves[-1].get("decision") != "shadow":
            return None
        return moves[-1]

    def promote_pending_shadow(self, last: dict[str, Any]) -> dict[str, Any]:
        """Promote the shadow version of an earlier pass once its shadow period ended."""
        until = to_utc_timestamp(last["evidence"]["promote_after"])
        version = last["evidence"]["version"]

        def work() -> dict[str, Any]:
            event = self.project.registry.promote(
                self.model,
                version,
                alias="champion",
                reason=f"shadow period of loop pass {last['pass_id']} ended {until:%Y-%m-%d}",
                user=LOOP_USER,
            )
            return {
                "decision": "promoted",
                "summary": f"{self.model}/{version} is the champion after its shadow period",
                "version": version,
                "from_pass": last["pass_id"],
                "event": event.to_dict(),
            }

        return self.run_step("promote_shadow", [last["id"]], work)


def bootstrap_champion(
    project: Any,
    *,
    as_of: Any = None,
    settings: LoopSettings | None = None,
    reason: str = "initial champion",
) -> PassResult:
    """Train, register and promote a first champion on the newest window at ``as_of``.

    The same steps as a pass (records, audit, lock) without triggers or a gate: there is
    nothing to compare with yet.
    """
    settings = settings or project.config.loop
    when = floor_as_of(as_of, settings.every)
    p = _Pass(project, settings, when, None)
    p.pass_id = content_key("bootstrap", p.pass_id)
    with p.state.lock():
        p.outputs["start"] = {"champion_version": None, "champion_params": {}}
        p.dataset()
        p.train()
        p.register()
        version = p.outputs["register"]["version"]

        def work() -> dict[str, Any]:
            event = project.registry.promote(
                p.model, version, alias="champion", reason=reason, user=LOOP_USER
            )
            return {
                "decision": "promoted",
                "summary": f"{p.model}/{version} is the first champion",
                "version": version,
                "event": event.to_dict(),
            }

        done = p.run_step("promote", [version], work)
        return _finish(p, "promoted", done["summary"])


def newest_windows(
    spine: pd.DataFrame, config: Any, as_of: pd.Timestamp, settings: LoopSettings
) -> dict[str, str | None]:
    """Out-of-time windows ending at the newest application whose label is known at ``as_of``.

    ``test`` is the newest ``loop.window.test`` of applications with a mature label,
    ``valid`` the span before it and ``train`` the span before that (all history when
    ``loop.window.train`` is null).
    """
    label = config.label
    times = pd.to_datetime(spine[config.as_of], utc=True)
    if label.observed_at:
        if label.observed_at not in spine.columns:
            raise ConfigError(
                f"The spine lacks the label's observed_at column {label.observed_at!r}."
            )
        observed = pd.to_datetime(spine[label.observed_at], utc=True)
    elif label.maturity:
        observed = times + pd.Timedelta(parse_duration(label.maturity))
    else:
        raise ConfigError(
            "The loop needs to know when labels are known: give the train config's label "
            "an observed_at column or a maturity (e.g. maturity: 365d)."
        )
    mature = spine[label.column].notna().to_numpy() & (observed <= as_of).to_numpy()
    if not mature.any():
        raise ConfigError(
            f"No label is known at {as_of.isoformat()}: nothing to train or test on yet."
        )
    end = times[mature].max()
    w = settings.window
    test_from = end - pd.Timedelta(parse_duration(w.test))
    valid_from = test_from - pd.Timedelta(parse_duration(w.valid))
    train_from = valid_from - pd.Timedelta(parse_duration(w.train)) if w.train else None
    return {
        "train_from": train_from.isoformat() if train_from is not None else None,
        "valid_from": valid_from.isoformat(),
        "test_from": test_from.isoformat(),
        "test_until": end.isoformat(),
    }


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def score_frame(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """P(bad) of ``model`` on ``frame`` (which must hold every input the model reads)."""
    names = model.schema_.names
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ConfigError(
            f"The newest training set lacks the model's input(s) {missing[:10]!r}; the "
            "champion and the challenger must read the same feature service."
        )
    return model.predict_proba(frame[names])[:, 1]


def _hanley_mcneil_se(auc: float, n: Any, bad_rate: Any) -> float:
    """Standard error of an AUC from its value and class counts (Hanley & McNeil, 1982).

    The champion's test rows are not kept, only its test AUC, row count and bad rate, so
    DeLong's estimator (which needs the scores) cannot be used for the reference AUC;
    this closed form needs only those three figures. NaN when they are unknown.
    """
    if n is None or bad_rate is None:
        return float("nan")
    n_bad = float(n) * float(bad_rate)
    n_good = float(n) - n_bad
    if n_bad < 2 or n_good < 2:
        return float("nan")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_bad - 1) * (q1 - auc * auc) + (n_good - 1) * (q2 - auc * auc)) / (
        n_bad * n_good
    )
    return float(np.sqrt(max(var, 0.0)))


def _score_bins(model: Any) -> dict[str, Any] | None:
    """The frozen bins of a model's training scores (stored with it at training)."""
    reference = (getattr(model, "metadata_", None) or {}).get("drift_reference") or {}
    score = reference.get("score") or {}
    return score.get("bins")


def _champion_params(run: Any) -> dict[str, Any]:
    """The champion's final model parameters (from its run), for a warm start."""
    if run is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in run.params.items():
        if key.startswith("model.") and not key.startswith("model.kind"):
            try:
                out[key.removeprefix("model.")] = json.loads(value)
            except ValueError:
                out[key.removeprefix("model.")] = value
    return out


def _load_run_model(project: Any, run_id: str) -> Any:
    import tempfile

    from lendml.models import load_model

    with tempfile.TemporaryDirectory(prefix="lendml-loop-") as tmp:
        path = project.tracker.download_artifacts(run_id, "model", tmp)
        return load_model(path)


def run_pass(
    project: Any,
    *,
    as_of: Any = None,
    settings: LoopSettings | None = None,
    progress: Progress | None = None,
) -> PassResult:
    """Run (or resume) the loop pass for ``as_of`` under the project's loop lock.

    Returns the :class:`PassResult`; a pass that already finished is read back from its
    records (nothing is redone, nothing promoted twice).

    Raises
    ------
    LoopBusy
        Another pass holds the lock.
    ConfigError
        The model has no champion, or the train config cannot drive a loop.
    """
    settings = settings or project.config.loop
    when = floor_as_of(as_of, settings.every)
    p = _Pass(project, settings, when, progress)
    with p.state.lock():
        try:
            return _run(p)
        except Exception as exc:
            summary = f"{type(exc).__name__}: {exc}"
            p.state.audit(
                jsonable(
                    {
                        "id": f"{p.pass_id}:failed:{content_key(summary)}",
                        "pass_id": p.pass_id,
                        "model": p.model,
                        "as_of": when.isoformat(),
                        "step": "failed",
                        "decision": "failed",
                        "summary": summary[:2000],
                        "evidence": {"completed": list(p.outputs)},
                    }
                )
            )
            raise


def _run(p: _Pass) -> PassResult:
    p.start()
    p.refresh()
    pending = p.pending_shadow()
    if pending is not None:
        until = to_utc_timestamp(pending["evidence"]["promote_after"])
        if p.as_of < until:
            # one candidate at a time: no new challenger while one serves in shadow
            return _finish(
                p,
                "shadow_pending",
                f"{p.model}/{pending['evidence']['version']} serves in shadow until "
                f"{until:%Y-%m-%d}; no new challenger before then",
            )
        done = p.promote_pending_shadow(pending)
        return _finish(p, "promoted", done["summary"])
    p.dataset()
    trig = p.triggers()
    if not trig["fired"]:
        return _finish(p, "no_trigger", trig["summary"])
    p.train()
    p.evaluate()
    verdict = p.gate()
    if verdict["decision"] != "passed":
        return _finish(p, "rejected", verdict["summary"])
    p.register()
    done = p.promote()
    return _finish(p, done["decision"], done["summary"])


def _finish(p: _Pass, status: str, summary: str) -> PassResult:
    p.state.audit(
        jsonable(
            {
                "id": f"{p.pass_id}:end",
                "pass_id": p.pass_id,
                "model": p.model,
                "as_of": p.as_of.isoformat(),
                "step": "end",
                "decision": status,
                "summary": summary,
                "evidence": {"reused": p.reused, "timings_seconds": p.timings},
            }
        )
    )
    return PassResult(
        pass_id=p.pass_id,
        model=p.model,
        as_of=p.as_of,
        status=status,
        summary=summary,
        steps=dict(p.outputs),
        reused=list(p.reused),
        timings=dict(p.timings),
    )


def replay(
    project: Any,
    *,
    start: Any,
    end: Any,
    every: str,
    settings: LoopSettings | None = None,
    progress: Callable[[PassResult], None] | None = None,
) -> list[PassResult]:
    """One pass at each as-of time from ``start`` to ``end`` (included), ``every`` apart.

    A backtest of the loop over history: each pass sees only the spine rows and labels
    known at its as-of time. Returns the passes, oldest first.
    """
    step = pd.Timedelta(parse_duration(every))
    if step <= pd.Timedelta(0):
        raise ConfigError(f"every must be a positive duration; got {every!r}.")
    when, last = to_utc_timestamp(start), to_utc_timestamp(end)
    if last < when:
        raise ConfigError(f"end ({last.isoformat()}) is before start ({when.isoformat()}).")
    results = []
    while when <= last:
        result = run_pass(project, as_of=when, settings=settings)
        results.append(result)
        if progress is not None:
            progress(result)
        when = when + step
    return results


def loop_history(project: Any, *, settings: LoopSettings | None = None) -> list[dict[str, Any]]:
    """Every audit entry of the project's loop, oldest first."""
    settings = settings or project.config.loop
    return LoopState(project.resolve_path(settings.state)).history()


__all__ = [
    "STEPS",
    "PassResult",
    "bootstrap_champion",
    "floor_as_of",
    "loop_history",
    "newest_windows",
    "replay",
    "run_pass",
    "score_frame",
]
