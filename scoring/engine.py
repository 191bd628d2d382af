"""The scorer: windows of turns in, clipped PHQ-9 scores with their severity out.

Ties the renderer, the batcher (inside the backend) and a backend together; the streaming worker,
offline scoring and the demo all score through `Scorer.score`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scoring.backends import Backend, make_backend
from scoring.model import build_untrained, load_tokenizer, resolve_model_path
from scoring.render import Rendered, render_window

log = logging.getLogger(__name__)

PHQ9_MIN, PHQ9_MAX = 0.0, 27.0


@dataclass(frozen=True)
class ScoreOutput:
    score: float  # clipped to 0..27
    severity: str  # CONTRACT section 3
    n_tokens: int  # after truncation
    window_start: datetime | None  # ts of the oldest turn kept
    n_sessions: int  # sessions with a kept turn
    n_user_turns: int  # user turns kept
    raw: float  # the model's output in PHQ-9 points, before clipping
    truncated: bool = False


def severity(score: float) -> str:
    from phq.models import (
        severity as contract_severity,  # lazy: scoring imports without pydantic
    )

    return contract_severity(score)


def clip(points: float) -> float:
    return min(PHQ9_MAX, max(PHQ9_MIN, float(points)))


def untrained_dir(model_dir: str) -> Path:
    """Where the stand-in untrained model lives: beside model_dir, so it never counts as the newest."""
    beside = Path(model_dir).resolve().parent / "untrained"
    try:
        beside.parent.mkdir(parents=True, exist_ok=True)
        if os.access(beside.parent, os.W_OK):
            return beside
    except OSError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "phq-monitor" / "untrained"


class Scorer:
    def __init__(self, backend: Backend, tokenizer=None):
        self.backend = backend
        self.meta = backend.meta
        self.model_version: str = self.meta.model_version
        self.token_budget: int = self.meta.token_budget
        self.tokenizer = tokenizer or getattr(backend, "tokenizer", None) or load_tokenizer(backend.path)

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", **kwargs) -> Scorer:
        return cls(make_backend(backend, path, **kwargs))

    @classmethod
    def from_settings(cls, model_dir: str, model_path: str = "", backend: str = "auto", **kwargs) -> Scorer:
        """The model PHQ_MODEL_PATH names, else the newest under PHQ_MODEL_DIR, else an untrained one."""
        path = resolve_model_path(model_dir, model_path)
        if path is None:
            path = build_untrained(untrained_dir(model_dir))
            log.warning("no model directory under %s: scoring with the UNTRAINED model %s (its scores mean nothing)", model_dir, path)
        return cls.load(path, backend, **kwargs)

    def render(self, windows: list[list]) -> list[Rendered]:
        return [render_window(turns, self.tokenizer, self.token_budget, self.meta.template) for turns in windows]

    def score(self, windows: list[list]) -> list[ScoreOutput]:
        """One output per window (a list of turns, any order), in input order."""
        return self.score_rendered(self.render(windows))

    def score_rendered(self, rendered: list[Rendered]) -> list[ScoreOutput]:
        points = self.backend.predict(rendered) if rendered else []
        return [_output(r, p) for r, p in zip(rendered, points)]

    def close(self) -> None:
        self.backend.close()


def _output(r: Rendered, points: float) -> ScoreOutput:
    score = clip(points)
    return ScoreOutput(
        score=score,
        severity=severity(score),
        n_tokens=r.n_tokens,
        window_start=r.window_start,
        n_sessions=r.n_sessions,
        n_user_turns=r.n_user_turns,
        raw=float(points),
        truncated=r.truncated,
    )
