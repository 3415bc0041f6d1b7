"""Request and response bodies of the scoring API (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

EntityKey = StrictInt | StrictStr
FieldValue = StrictBool | StrictInt | StrictFloat | StrictStr | None

_MODEL = Field(
    default=None,
    max_length=300,
    description="NAME@ALIAS or NAME/VERSION; default: the champion of the served model.",
    examples=["credit_pd@champion"],
)
_ENTITY = Field(
    default_factory=dict,
    max_length=16,
    description='Entity keys, e.g. {"borrower_id": 42}.',
    examples=[{"borrower_id": 42}],
)
_FIELDS = Field(
    default_factory=dict,
    max_length=500,
    description="Request-time fields (null for a missing value).",
    examples=[{"loan_amount": 12000}],
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ScoreRequest(_Body):
    """One applicant."""

    model: str | None = _MODEL
    entity: dict[str, EntityKey] = _ENTITY
    fields: dict[str, FieldValue] = _FIELDS
    explain: StrictBool = Field(
        default=False, description="Return reasons for every decision, not only declines."
    )


class BatchItem(_Body):
    """One applicant of a batch."""

    entity: dict[str, EntityKey] = _ENTITY
    fields: dict[str, FieldValue] = _FIELDS


class BatchRequest(_Body):
    """Many applicants scored by one model (at most ``serving.max_batch``)."""

    model: str | None = _MODEL
    items: list[BatchItem] = Field(min_length=1, description="The applicants.")
    explain: StrictBool = False


class Reason(BaseModel):
    """One principal reason (adverse: it raised the risk against the reference applicant)."""

    code: str
    text: str
    features: list[str]
    contribution: float = Field(description="Attribution on the log-odds of a bad outcome.")


class ModelRef(BaseModel):
    """The model version that scored the applicant."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: int


class ScoreResponse(BaseModel):
    """The decision for one applicant."""

    request_id: str
    model: ModelRef
    role: Literal["champion", "canary", "shadow"] = Field(
        description="The version's role: live traffic gets the champion or, for a share of "
        "entities, the canary; a shadow answers only when asked for by name."
    )
    score: float = Field(description="Log-odds of a bad outcome.")
    probability: float = Field(description="Probability of a bad outcome.")
    decision: Literal["approve", "refer", "decline"]
    policy_decision: Literal["approve", "refer", "decline"] = Field(
        description="The decision of the cutoffs; differs from decision only for an "
        "approval of the holdout (explore)."
    )
    explore: bool = Field(
        description="Approved by the approval holdout: a small random share of the "
        "applicants the cutoffs would decline or refer, approved to measure their outcomes."
    )
    reasons: list[Reason] = Field(
        description="Up to 4 reasons, most important first; always for declines."
    )


class BatchResponse(BaseModel):
    """The decisions of a batch, in the order of its items."""

    request_id: str
    results: list[ScoreResponse]


class CanaryBody(_Body):
    """A canary: the version (alias or number) and the share of entities it scores."""

    ref: StrictStr = Field(min_length=1, max_length=100, description="An alias or a version.")
    percent: float = Field(ge=0.0, le=100.0, allow_inf_nan=False)


class TrafficRequest(_Body):
    """Shadow and canary of one model (null turns either off)."""

    shadow: StrictStr | None = Field(default=None, min_length=1, max_length=100)
    canary: CanaryBody | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: str
    message: str
    field: str | None = None
    request_id: str


class Health(BaseModel):
    """A health or readiness answer."""

    status: str


__all__ = [
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "CanaryBody",
    "ErrorBody",
    "Health",
    "ModelRef",
    "Reason",
    "ScoreRequest",
    "ScoreResponse",
    "TrafficRequest",
]
