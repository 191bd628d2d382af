"""Baselines put beside every trained model: the training mean, a length-only regression, TF-IDF (1-3
grams) + ridge, and any model directory scored through the serving path (`scoring.engine.Scorer`):
the slot where the cold-start item model goes. Also the bag-of-words check of `phq synth` v2.

Each baseline is fit on training examples (`training.data.Example`) and predicts PHQ-9 points.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def user_text(ex) -> str:
    return "\n".join(t.text for t in ex.turns if t.role == "user")


def all_text(ex) -> str:
    return "\n".join(f"{t.role}: {t.text}" for t in ex.turns)


class TrainingMean:
    name = "training_mean"

    def fit(self, examples):
        self.mean = float(np.mean([ex.total for ex in examples]))
        return self

    def predict(self, examples) -> list[float]:
        return [self.mean] * len(examples)


class LengthOnly:
    """How much the user wrote in the window (log characters), and nothing about what."""

    name = "length_only"

    def fit(self, examples):
        x = np.array([math.log1p(len(user_text(ex))) for ex in examples])
        y = np.array([ex.total for ex in examples], float)
        self.slope, self.intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
        return self

    def predict(self, examples) -> list[float]:
        return [_clip(self.intercept + self.slope * math.log1p(len(user_text(ex)))) for ex in examples]


class TfidfRidge:
    """TF-IDF of word 1-3 grams and ridge regression (its strength picked by cross-validation). `text`
    picks what it reads: the user's turns only (default, the stronger), or every turn with its role."""

    def __init__(self, text: str = "user"):
        self.text = user_text if text == "user" else all_text
        self.name = "tfidf_ridge" if text == "user" else "tfidf_ridge_all_turns"

    def fit(self, examples):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import RidgeCV

        self.vec = TfidfVectorizer(ngram_range=(1, 3), min_df=2, sublinear_tf=True)
        x = self.vec.fit_transform([self.text(ex) for ex in examples])
        self.ridge = RidgeCV(alphas=np.logspace(-1, 2.5, 8)).fit(x, [ex.total for ex in examples])
        return self

    def predict(self, examples) -> list[float]:
        return [_clip(v) for v in self.ridge.predict(self.vec.transform([self.text(ex) for ex in examples]))]


class ModelDir:
    """A model directory scored as serving scores it: how the cold-start item model joins the baselines
    (it needs no fitting). `backend` as PHQ_BACKEND."""

    def __init__(self, path: str | Path, name: str | None = None, backend: str = "transformers"):
        self.path, self.backend = Path(path), backend
        self.name = name or self.path.name

    def fit(self, examples):
        return self

    def predict(self, examples) -> list[float]:
        from scoring.engine import Scorer

        scorer = Scorer.load(self.path, self.backend)
        try:
            return [s.score for s in scorer.score([ex.turns for ex in examples])]
        finally:
            scorer.close()


def _clip(v: float) -> float:
    return min(27.0, max(0.0, float(v)))


def standard(model_dirs: dict[str, str | Path] | None = None) -> list:
    """The baselines of every study: mean, length, bag of words; plus each named model directory
    (e.g. {"cold_start_items": DIR}, once the cold-start item model exists)."""
    out = [TrainingMean(), LengthOnly(), TfidfRidge()]
    out += [ModelDir(path, name) for name, path in (model_dirs or {}).items()]
    return out


def run(baselines: list, train_examples, test_examples) -> dict[str, list[float]]:
    """{name: predictions on `test_examples`}, each baseline fit on `train_examples` first."""
    return {b.name: b.fit(train_examples).predict(test_examples) for b in baselines}


def metrics_table(y, predictions: dict[str, list[float]]) -> dict[str, dict]:
    """{name: {mae, rmse, pearson_r, auc_10}} of each set of predictions against `y`."""
    from training import metrics as M

    y = np.asarray(y, float)
    out = {}
    for name, p in predictions.items():
        m = M.point_metrics(y, np.asarray(p, float))
        out[name] = {k: m[k] for k in ("mae", "rmse", "pearson_r", "auc_10")}
    return out


# --- the bag-of-words check of `phq synth` v2 --------------------------------------------------------

def synth_examples(n_users: int, seed: int, days: int = 28):
    """(labelled examples by split, pool examples with their truth at the window's end) of one `phq synth` sample."""
    from datetime import datetime, timezone

    from training import synth
    from training.data import Label, labelled_examples, parse_survey_date, turns_from_events, unlabelled_examples

    data = synth.synthesize(n_users, seed, start=datetime(2026, 1, 1, tzinfo=timezone.utc), days=days)
    turns = turns_from_events(data.events)
    labels = [Label(r["user_id"], parse_survey_date(r["survey_date"]), float(r["phq9_total"]), split=r["split"])
              for r in data.labels]
    gt, _ = labelled_examples(turns, labels)
    split = {lab.user_id: lab.split for lab in labels}
    by_split = {s: [e for e in gt if split[e.user_id] == s] for s in ("train", "val", "test")}
    pool = unlabelled_examples(turns, set(split))
    day = {(r["user_id"], r["day"]): r["phq9_total"] for r in data.truth}
    for ex in pool:  # the pool's truth is read here only to measure, never to train
        ex.extra["truth"] = day[(ex.user_id, int((ex.survey_ts - data.start).total_seconds() // 86400))]
    return by_split, pool


def bow_check(n_users: int = 400, train_seed: int = 1, test_seed: int = 2, days: int = 28) -> dict:
    """TF-IDF 1-3 grams + ridge fit on one seed's training users, tested on another seed's test users
    (held-out phrase families) and, for contrast, on its pool users (the training families) against
    their latent truth. The target of `phq synth` v2: Pearson r below 0.85 on the test users."""
    from training.metrics import pearson

    train_split, _ = synth_examples(n_users, train_seed, days)
    test_split, pool = synth_examples(n_users, test_seed, days)
    fit_on = train_split["train"] + train_split["val"]
    out = {"n_users_per_seed": n_users, "train_seed": train_seed, "test_seed": test_seed, "n_train": len(fit_on),
           "n_test": len(test_split["test"]), "n_pool": len(pool)}
    for b in (TfidfRidge("user"), TfidfRidge("all")):
        b.fit(fit_on)
        test_p = b.predict(test_split["test"])
        pool_p = b.predict(pool)
        out[b.name] = {"test_r": pearson(np.array([e.total for e in test_split["test"]]), np.array(test_p)),
                       "test_mae": float(np.mean(np.abs(np.array(test_p) - [e.total for e in test_split["test"]]))),
                       "pool_r_vs_truth": pearson(np.array([e.extra["truth"] for e in pool]), np.array(pool_p))}
    return out


if __name__ == "__main__":
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    print(json.dumps(bow_check(n), indent=2))
