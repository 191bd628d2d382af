"""What evaluation and the reviewers' analyses share: the disclaimer, reading and writing predictions
CSVs, number formatting and the plotting backend. Both import this module; neither imports the other's
internals (`phq eval` dispatches to the analyses, never the reverse).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

DISCLAIMER = (
    "Decision support for care teams, not a diagnosis. Figures from synthetic data measure the "
    "pipeline on a made-up task and say nothing about clinical accuracy."
)


def read_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, y_true, y_pred) from a CSV with at least the columns user_id, y_true, y_pred."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(row for row in f if not row.startswith("#"))
        missing = {"user_id", "y_true", "y_pred"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected user_id,y_true,y_pred")
        rows = list(reader)
    users = np.array([r["user_id"] for r in rows])
    try:
        y = np.array([float(r["y_true"]) for r in rows])
        p = np.array([float(r["y_pred"]) for r in rows])
    except ValueError as exc:
        raise ValueError(f"{path}: y_true and y_pred must be numbers ({exc})") from None
    return users, y, p


def write_predictions(path: str | Path, users, y_true, y_pred, extra: dict[str, list] | None = None) -> None:
    extra = extra or {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "y_true", "y_pred", *extra])
        for i, (u, y, p) in enumerate(zip(users, y_true, y_pred)):
            w.writerow([u, f"{float(y):g}", f"{float(p):.4f}", *(v[i] for v in extra.values())])


def plt_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt(v, ci=None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
