"""Prometheus metrics of the scoring service, on a registry of its own.

Each app gets its own :class:`prometheus_client.CollectorRegistry`, so two services in
one process (tests, a benchmark) never share counters. Labels hold model names,
versions, endpoints, decisions and feature names — never entity keys or feature values.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class ServingMetrics:
    """The service's counters, histograms and gauges.

    ``lendml_feature_missing_total / lendml_scored_rows_total`` per model and feature is
    the missing rate of each input; ``lendml_model_version`` says which version serves
    each role (champion, canary, shadow; 0 when the role is unset).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lendml_requests",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "lendml_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.probability = Histogram(
            "lendml_score_probability",
            "Distribution of the probability of a bad outcome served, by model and role.",
            ["model", "role"],
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "lendml_decisions",
            "Decisions by model, version, role and decision.",
            ["model", "version", "role", "decision"],
            registry=r,
        )
        self.rows = Counter(
            "lendml_scored_rows", "Applicants scored, by model.", ["model"], registry=r
        )
        self.missing = Counter(
            "lendml_feature_missing",
            "Model inputs that were missing before the missing-value rules, by feature.",
            ["model", "feature"],
            registry=r,
        )
        self.model_version = Gauge(
            "lendml_model_version",
            "The model version serving each role (0: none).",
            ["model", "role"],
            registry=r,
        )
        self.swaps = Counter(
            "lendml_model_swaps",
            "Attempts to deploy a newly promoted version, by outcome (swapped, failed).",
            ["model", "outcome"],
            registry=r,
        )
        self.declines_without_reasons = Counter(
            "lendml_declines_without_reasons",
            "Declines with no adverse reason (the applicant scored below the reference point).",
            ["model"],
            registry=r,
        )
        self.explored = Counter(
            "lendml_explored_approvals",
            "Approvals of the approval holdout, by the decision the cutoffs would have made.",
            ["model", "version", "role", "policy_decision"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "lendml_shadow_dropped",
            "Shadow scores skipped because the shadow queue was full.",
            ["model"],
            registry=r,
        )

    def observe_result(
        self,
        *,
        model: str,
        version: int,
        role: str,
        probability: float,
        decision: str,
        missing: Iterable[str],
    ) -> None:
        """Count one scored applicant."""
        self.probability.labels(model, role).observe(probability)
        self.decisions.labels(model, str(version), role, decision).inc()
        self.rows.labels(model).inc()
        for feature in missing:
            self.missing.labels(model, feature).inc()

    def set_versions(self, model: str, versions: dict[str, int | None]) -> None:
        """Record which version serves each role of ``model``."""
        for role, version in versions.items():
            self.model_version.labels(model, role).set(version or 0)

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)


__all__ = ["ServingMetrics"]
