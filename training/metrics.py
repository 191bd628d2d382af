"""The study's metric suite as plain numpy functions: errors, correlations, AUC at every PHQ-9
threshold, a user-level bootstrap, error by severity band, and calibration by decile.

`evaluate.py` turns these into metrics.json, plots and a report; nothing here does I/O.
"""

from __future__ import annotations

import math

import numpy as np

from phq.models import SEVERITY_BANDS

THRESHOLDS = tuple(range(3, 25))  # AUC at PHQ-9 >= t for t = 3..24
SCALAR_KEYS = ("mae", "rmse", "pearson_r", "spearman_rho", "auc_10")


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(p - y)))


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson r, or None when either side is constant (r is undefined there)."""
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return None if den == 0 else float(np.clip(np.dot(x, y) / den, -1.0, 1.0))


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata's default)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[True, xs[1:] != xs[:-1]]  # first position of each run of equal values
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    avg = (first + last) / 2.0 + 1.0
    out = np.empty(len(x), float)
    out[order] = avg[run_id]
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    return pearson(ranks(x), ranks(y))


def auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC via the Mann-Whitney U statistic (ties count one half); None when a class is empty."""
    return _auc_ranked(np.asarray(positive, bool), ranks(score))


def _auc_ranked(positive: np.ndarray, r: np.ndarray) -> float | None:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    u = r[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates over every distinct score, starting at (0, 0)."""
    positive = np.asarray(positive, bool)
    order = np.argsort(-np.asarray(score, float), kind="mergesort")
    s, pos = np.asarray(score, float)[order], positive[order]
    tp, fp = np.cumsum(pos), np.cumsum(~pos)
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tpr = np.r_[0.0, tp[last_of_run] / max(pos.sum(), 1)]
    fpr = np.r_[0.0, fp[last_of_run] / max((~pos).sum(), 1)]
    return fpr, tpr


def point_metrics(y: np.ndarray, p: np.ndarray) -> dict:
    """Every metric at one sample: scalars plus AUC by threshold (None where a class is empty)."""
    rp = ranks(p)  # shared by Spearman and every AUC
    by_t = {str(t): _auc_ranked(y >= t, rp) for t in THRESHOLDS}
    return {
        "mae": mae(y, p),
        "rmse": rmse(y, p),
        "pearson_r": pearson(y, p),
        "spearman_rho": pearson(ranks(y), rp),
        "auc_10": by_t["10"],
        "auc_by_threshold": by_t,
    }


def threshold_counts(y: np.ndarray) -> dict:
    return {str(t): {"positive": int((y >= t).sum()), "negative": int((y < t).sum())} for t in THRESHOLDS}


def bootstrap_ci(
    users: np.ndarray, y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile intervals over users: each replicate draws users with replacement and keeps all of
    their rows, since one user's several surveys are not independent. An interval is None when
    fewer than half the replicates could compute the metric (e.g. a class empty)."""
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(users, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == k) for k in range(len(uniq))]
    samples: dict[str, list] = {k: [] for k in SCALAR_KEYS}
    samples.update({f"t{t}": [] for t in THRESHOLDS})
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([rows_of[k] for k in pick])
        m = point_metrics(y[idx], p[idx])
        for k in SCALAR_KEYS:
            samples[k].append(m[k])
        for t in THRESHOLDS:
            samples[f"t{t}"].append(m["auc_by_threshold"][str(t)])

    def interval(values: list) -> list[float] | None:
        vals = np.array([v for v in values if v is not None], float)
        if len(vals) < n_boot / 2:
            return None
        alpha = (1 - level) / 2
        return [float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))]

    out = {k: interval(samples[k]) for k in SCALAR_KEYS}
    out["auc_by_threshold"] = {str(t): interval(samples[f"t{t}"]) for t in THRESHOLDS}
    return out


def band_of(score: float) -> str:
    for lower, band in SEVERITY_BANDS:
        if score >= lower:
            return band
    return "minimal"


def error_by_band(y: np.ndarray, p: np.ndarray) -> dict:
    """MAE and mean signed error (prediction minus truth) within each true severity band."""
    bands = np.array([band_of(v) for v in y])
    out = {}
    for _, band in reversed(SEVERITY_BANDS):
        m = bands == band
        out[band] = {
            "n": int(m.sum()),
            "mae": mae(y[m], p[m]) if m.any() else None,
            "bias": float(np.mean(p[m] - y[m])) if m.any() else None,
        }
    return out


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted and mean true score in each decile of the predictions."""
    order = np.argsort(p, kind="mergesort")
    out = []
    for k, idx in enumerate(np.array_split(order, min(bins, len(p)))):
        if len(idx):
            out.append({"bin": k, "n": int(len(idx)), "mean_pred": float(p[idx].mean()), "mean_true": float(y[idx].mean())})
    return out


def all_metrics(users: np.ndarray, y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """The metrics.json of CONTRACT section 5: numbers at the top, `ci95` and `counts` beside them."""
    y, p, users = np.asarray(y, float), np.asarray(p, float), np.asarray(users)
    if len(y) == 0:
        raise ValueError("no predictions to evaluate: the CSV needs at least one row of user_id,y_true,y_pred")
    m = point_metrics(y, p)
    return {
        "n": int(len(y)),
        **{k: m[k] for k in SCALAR_KEYS},
        "auc_by_threshold": m["auc_by_threshold"],
        "ci95": bootstrap_ci(users, y, p, n_boot=n_boot, seed=seed),
        "counts": {"n_rows": int(len(y)), "n_users": int(len(np.unique(users))), "by_threshold": threshold_counts(y)},
        "error_by_band": error_by_band(y, p),
        "calibration": calibration(y, p),
        "bootstrap": {"replicates": n_boot, "seed": seed, "unit": "user"},
    }
