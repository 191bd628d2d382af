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


class Trajectory(Page[Score]):
    user_id: str


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
    token_label: str
    user_id: str | None
    alert_id: int | None
    action: str


class Health(BaseModel):
    status: Literal["ok"]
