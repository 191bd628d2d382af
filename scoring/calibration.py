"""Calibrated uncertainty of a model's scores: split-conformal intervals from held-out residuals, and the
noise bound a change between two scores of one user must exceed (CONTRACT v2 section 3).

Intervals are split-conformal on the signed residuals, so a model that reads low (the cold-start model
on synthetic users does) gets an interval that reaches higher above the score than below it.
`fit` runs where labels are (training, or the cold-start model's one-off calibration on held-out
synthetic users); `interval` and `change_bound` run at serving time from the dict in `phq.json`.
"""

from __future__ import annotations

import math

from phq.models import PHQ9_MAX, PHQ9_MIN, severity

COVERAGE = 0.90  # score_low..score_high
CHANGE_Z = 1.96  # the 95% bound for a difference of two scores
MIN_PER_BAND = 30  # fewer held-out users in a band: that band uses the overall quantile


def _conformal_quantile(abs_residuals: list[float], coverage: float) -> float:
    """The split-conformal quantile: the ceil((n+1) * coverage)-th smallest absolute residual."""
    r = sorted(abs_residuals)
    n = len(r)
    k = math.ceil((n + 1) * coverage)
    return float(r[min(k, n) - 1])


def _signed_bounds(residuals: list[float], coverage: float) -> tuple[float, float]:
    """(low, high) offsets from a prediction to its interval: the split-conformal quantiles of the signed
    residuals (truth - prediction) at (1 - coverage)/2 and (1 + coverage)/2. A model that reads low gets
    an interval reaching higher than it reaches lower."""
    r = sorted(residuals)
    n = len(r)
    tail = (1 - coverage) / 2
    lo = max(1, math.floor((n + 1) * tail))
    hi = min(n, math.ceil((n + 1) * (1 - tail)))
    return float(r[lo - 1]), float(r[hi - 1])


def fit(y_true, y_pred, *, source: str, model_version: str = "", coverage: float = COVERAGE,
        change_bound: float | None = None, change_bound_source: str = "") -> dict:
    """A calibration from held-out (true, predicted) totals; by predicted severity band where a band has
    at least MIN_PER_BAND users. `change_bound`, when measured directly (the 95% error of a change between
    two scores of one user), replaces the approximation 1.96 x sqrt(2) x se, which assumes one user's
    errors are independent from one score to the next (with overlapping windows they are not)."""
    pairs = [(float(t), float(p)) for t, p in zip(y_true, y_pred)]
    if len(pairs) < 10:
        raise ValueError(f"calibration needs at least 10 held-out users, got {len(pairs)}")
    residuals = [t - p for t, p in pairs]
    overall = _conformal_quantile([abs(r) for r in residuals], coverage)
    low, high = _signed_bounds(residuals, coverage)
    by_band = {}
    for band in ("minimal", "mild", "moderate", "moderately_severe", "severe"):
        rb = [t - p for t, p in pairs if severity(p) == band]
        if len(rb) >= MIN_PER_BAND:
            b_low, b_high = _signed_bounds(rb, coverage)
            by_band[band] = {"q": _conformal_quantile([abs(r) for r in rb], coverage), "low": b_low, "high": b_high, "n": len(rb)}
    mean = sum(residuals) / len(residuals)
    se = math.sqrt(sum((r - mean) ** 2 for r in residuals) / max(1, len(residuals) - 1))
    return {
        "method": "split-conformal",
        "coverage": coverage,
        "n": len(pairs),
        "q": overall,  # symmetric half-width (for reference)
        "low": low,  # the interval is [score + low, score + high], clipped to 0..27
        "high": high,
        "by_band": by_band,
        "se": se,  # standard error of one score (residual standard deviation)
        "change_bound": change_bound if change_bound is not None else CHANGE_Z * math.sqrt(2.0) * se,
        "change_bound_method": change_bound_source or "1.96 x sqrt(2) x se",
        "source": source,
        "model_version": model_version,
    }


def interval(cal: dict | None, score: float) -> tuple[float | None, float | None]:
    """The 90% interval of a (clipped) score, or (None, None) without a calibration."""
    if not cal:
        return None, None
    band = cal.get("by_band", {}).get(severity(score)) or cal
    if "low" in band:
        low, high = score + band["low"], score + band["high"]
    else:  # a symmetric calibration (q only)
        low, high = score - band["q"], score + band["q"]
    low, high = min(max(PHQ9_MIN, low), PHQ9_MAX), max(min(PHQ9_MAX, high), PHQ9_MIN)
    return round(low, 3), round(max(low, high), 3)


def change_bound(cal: dict | None) -> float | None:
    """The |delta| a change between two scores of one user must reach to be beyond the model's noise."""
    if not cal:
        return None
    return float(cal["change_bound"])
