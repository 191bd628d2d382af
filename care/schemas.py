"""The API's response shapes; FastAPI derives the OpenAPI spec from these, so spec and responses agree."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

Severity = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]
T = TypeVar("T")


class Error(BaseModel):
    detail: str = Field(description="What was wrong, in one line")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last")


class Me(BaseModel):
    team: str
    label: str
    clinical_threshold: float
    reliable_change: float


class LatestScore(BaseModel):
    score_id: int
    score: float
    severity: Severity
    scored_at: datetime
    window_end: datetime = Field(description="End of the latest scored window: the last scored conversation")
    model_version: str


class UserSummary(BaseModel):
    user_id: str
    assigned_at: datetime
    latest: LatestScore | None
    previous_score: float | None = Field(description="The score before the latest (same model version)")
    trend: float | None = Field(description="latest minus previous score; positive is worsening")
    open_alerts: int
    open_worsening_alerts: int


class Score(BaseModel):
    id: int
    request_id: str
    user_id: str
    scored_at: datetime
    window_start: datetime
    window_end: datetime
    score: float
    severity: Severity
    model_version: str
    n_sessions: int
    n_user_turns: int
    n_tokens: int
    trigger_session_id: str
    created_at: datetime
    items: list[float] | None = Field(
        None, description="The nine PHQ-9 item scores (0..3, questionnaire order) summing to `score`; "
                          "null for a model without items")
    score_low: float | None = Field(None, description="Lower end of the model's calibrated 90% interval")
    score_high: float | None = Field(None, description="Upper end of the model's calibrated 90% interval")


class Trajectory(Page[Score]):
    user_id: str


class Quote(BaseModel):
    rank: int = Field(description="1 is the turn that weighed most for the item")
    event_id: str
    session_id: str
    ts: datetime
    excerpt: str = Field(description="At most 200 characters of the user's own turn (user-written text)")
    weight: float | None


class ItemEvidence(BaseModel):
    item: int = Field(description="1..9, questionnaire order")
    key: str
    label: str
    score: float | None = Field(description="The item's score 0..3; null for a model without items")
    evidence: list[Quote]


class ScoreEvidence(BaseModel):
    score_id: int
    user_id: str
    scored_at: datetime
    score: float
    severity: Severity
    score_low: float | None
    score_high: float | None
    model_version: str
    items: list[ItemEvidence] = Field(description="Always the nine PHQ-9 items, in questionnaire order")


class Alert(BaseModel):
    id: int
    user_id: str
    score_id: int
    scored_at: datetime
    model_version: str
    detected_at: datetime
    kind: Literal["reliable_change", "threshold_crossing", "severity_band_change"]
    direction: Literal["worsening", "improvement"]
    previous_score: float
    current_score: float
    delta: float
    noise_bound: float | None = Field(
        None, description="The model's calibrated 95% bound for a difference of two scores that |delta| exceeded; "
                          "null under the v1 rules (model without calibration)")
    previous_severity: Severity
    current_severity: Severity
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    status: Literal["open", "acknowledged"]


class Acknowledgement(BaseModel):
    alert: Alert
    changed: bool = Field(description="False when the alert was already acknowledged: nothing changed")
    message: str


class AuditEntry(BaseModel):
    id: int
    at: datetime
    token_label: str | None
    user_id: str | None = Field(description="null when no user was involved, or the user has since been erased")
    alert_id: int | None
    score_id: int | None
    action: str
    outcome: Literal["allowed", "denied"]
    reason: str | None = Field(description="Why a request was denied (e.g. not_found, expired_token)")


class Health(BaseModel):
    status: Literal["ok"]
