"""The reviewers' two analyses, as `phq eval pseudolabels` and `phq eval ablation`:
pseudolabel quality against real labels on held-out real-labelled users, and real-only vs
real-plus-pseudolabel training of the same backbone on the same test users (paired bootstrap).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from training import metrics as M
from training.data import parse_survey_date, read_labels
from training.report import DISCLAIMER, fmt, plt_module, read_predictions

KEYS = ("mae", "rmse", "pearson_r", "spearman_rho", "auc_10")


def read_scored(path: str | Path) -> dict[tuple, float]:
    """{(user_id, survey time or None): value} from a labels CSV (phq9_total) or a predictions CSV (y_pred)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(row for row in f if not row.startswith("#"))
        cols = set(reader.fieldnames or [])
        value = "y_pred" if "y_pred" in cols else "phq9_total" if "phq9_total" in cols else None
        if value is None or "user_id" not in cols:
            raise ValueError(f"{path}: expected user_id and y_pred (predictions) or phq9_total (labels)")
        out = {}
        for row in reader:
            when = parse_survey_date(row["survey_date"]) if row.get("survey_date") else None
            out[(row["user_id"], when)] = float(row[value])
    return out


def _lookup(scored: dict, user: str, when) -> float | None:
    v = scored.get((user, when))
    return v if v is not None else scored.get((user, None))


def _named(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"{spec!r}: give NAME=FILE")
    return name, path


# --- pseudolabel quality ----------------------------------------------------------------------------

def pseudolabel_quality(real_labels: str, sources: list[tuple[str, str]], out: str | Path, n_boot: int = 1000,
                        seed: int = 0) -> dict:
    """Each source's labels against the real labels at the same (user, survey date); coverage counts the
    real labels a source gave a value for (a teacher's failures lower it, they are not imputed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real = read_labels(real_labels)
    result = {}
    for name, path in sources:
        scored = read_scored(path)
        rows = [(lab.user_id, lab.total, _lookup(scored, lab.user_id, lab.survey_ts)) for lab in real]
        rows = [r for r in rows if r[2] is not None]
        if not rows:
            result[name] = {"n": 0, "coverage": 0.0}
            continue
        users, y, p = (np.array(c) for c in zip(*rows))
        m = M.all_metrics(users, y.astype(float), p.astype(float), n_boot=n_boot, seed=seed)
        result[name] = {"n": m["n"], "coverage": len(rows) / len(real), **{k: m[k] for k in KEYS},
                        "auc_by_threshold": m["auc_by_threshold"], "ci95": m["ci95"], "counts": m["counts"]}
    synthetic = all(lab.user_id.startswith("synthetic-") for lab in real)
    (out / "pseudolabel_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot_auc_lines({k: v for k, v in result.items() if v["n"]}, out / "pseudolabel_auc_by_threshold.png",
                    "Pseudolabel AUC by threshold" + (" (synthetic data)" if synthetic else ""))
    lines = ["# Pseudolabel quality against real labels", ""]
    if synthetic:
        lines += ["**Synthetic data.** Users from `phq synth`, not people.", ""]
    lines += [f"_{DISCLAIMER}_", "", f"{len(real)} real labels of held-out real-labelled users.", "",
              "| source | n (coverage) | MAE | RMSE | Pearson r | AUC (>= 10) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in result.items():
        if not r["n"]:
            lines.append(f"| {name} | 0 | n/a | n/a | n/a | n/a |")
            continue
        ci = r["ci95"]
        lines.append(f"| {name} | {r['n']} ({r['coverage']:.0%}) | {fmt(r['mae'], ci['mae'])} | {fmt(r['rmse'], ci['rmse'])} "
                     f"| {fmt(r['pearson_r'], ci['pearson_r'])} | {fmt(r['auc_10'], ci['auc_10'])} |")
    lines += ["", "![AUC by threshold per source](pseudolabel_auc_by_threshold.png)", ""]
    (out / "pseudolabel_quality.md").write_text("\n".join(lines))
    return result


def _plot_auc_lines(results: dict, path: Path, title: str) -> None:
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results.items():
        ts = [t for t in M.THRESHOLDS if r["auc_by_threshold"][str(t)] is not None]
        ax.plot(ts, [r["auc_by_threshold"][str(t)] for t in ts], "o-", ms=3, label=name)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set(xlabel="threshold t (positive: PHQ-9 >= t)", ylabel="AUC", ylim=(0.3, 1.02), xticks=list(M.THRESHOLDS),
           title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- ablation -----------------------------------------------------------------------------------

def ablation(a: tuple[str, str], b: tuple[str, str], out: str | Path, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics of two predictions files on the same test rows, and the paired bootstrap (over users) of
    b minus a: the same resampled users score both arms in each replicate."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (na, pa), (nb, pb) = a, b
    ka, kb = _keys(pa), _keys(pb)
    if sorted(ka) != sorted(kb):
        raise ValueError(f"{pa} and {pb} do not cover the same test rows; an ablation compares arms on the same users")
    ua, ya, qa = read_predictions(pa)
    ub, yb, qb = read_predictions(pb)
    order_b = {k: i for i, k in enumerate(kb)}
    idx = np.array([order_b[k] for k in ka])
    ub, yb, qb = ub[idx], yb[idx], qb[idx]
    if not np.allclose(ya, yb):
        raise ValueError("the two arms disagree on y_true for the same rows; were they scored against the same labels?")
    arms = {na: M.all_metrics(ua, ya, qa, n_boot=n_boot, seed=seed), nb: M.all_metrics(ua, ya, qb, n_boot=n_boot, seed=seed)}
    diff = paired_difference(ua, ya, qa, qb, n_boot=n_boot, seed=seed)
    result = {"arms": {n: {k: m[k] for k in KEYS} | {"ci95": {k: m["ci95"][k] for k in KEYS},
                                                      "auc_by_threshold": m["auc_by_threshold"]}
                       for n, m in arms.items()},
              "difference": {"of": f"{nb} minus {na}", **diff},
              "n": int(len(ya)), "n_users": int(len(np.unique(ua)))}
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    synthetic = all(str(u).startswith("synthetic-") for u in ua)
    _plot_auc_lines({n: m for n, m in arms.items()}, out / "ablation_auc_by_threshold.png",
                    "Ablation: AUC by threshold" + (" (synthetic data)" if synthetic else ""))
    lines = ["# Ablation: real labels only vs real plus pseudolabels", ""]
    if synthetic:
        lines += ["**Synthetic data.** Users from `phq synth`, not people.", ""]
    lines += [f"_{DISCLAIMER}_", "", f"Same backbone, same {result['n_users']} test users ({result['n']} labels).", "",
              "| arm | MAE | RMSE | Pearson r | Spearman rho | AUC (>= 10) |", "| --- | --- | --- | --- | --- | --- |"]
    for n, m in result["arms"].items():
        ci = m["ci95"]
        lines.append(f"| {n} | " + " | ".join(fmt(m[k], ci[k]) for k in KEYS) + " |")
    lines += ["", f"Paired bootstrap over users, {nb} minus {na} (negative MAE/RMSE difference favours {nb}):", "",
              "| metric | difference [95% CI] |", "| --- | --- |"]
    for k in KEYS:
        lines.append(f"| {k} | {fmt(diff[k]['point'], diff[k]['ci95'])} |")
    lines += ["", "![AUC by threshold for both arms](ablation_auc_by_threshold.png)", ""]
    (out / "ablation.md").write_text("\n".join(lines))
    return result


def _keys(path: str) -> list[tuple]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(row for row in f if not row.startswith("#")))
    return [(r["user_id"], r.get("survey_date", "")) for r in rows]


def paired_difference(users, y, pa, pb, n_boot: int = 1000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(users, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == k) for k in range(len(uniq))]
    ma, mb = M.point_metrics(y, pa), M.point_metrics(y, pb)
    samples = {k: [] for k in KEYS}
    for _ in range(n_boot):
        idx = np.concatenate([rows_of[k] for k in rng.integers(0, len(uniq), len(uniq))])
        sa, sb = M.point_metrics(y[idx], pa[idx]), M.point_metrics(y[idx], pb[idx])
        for k in KEYS:
            if sa[k] is not None and sb[k] is not None:
                samples[k].append(sb[k] - sa[k])
    out = {}
    for k in KEYS:
        point = None if ma[k] is None or mb[k] is None else mb[k] - ma[k]
        vals = np.array(samples[k])
        ci = [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))] if len(vals) >= n_boot / 2 else None
        out[k] = {"point": point, "ci95": ci}
    return out


# --- commands (dispatched from `phq eval`) ---------------------------------------------------------

def pseudolabels_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq eval pseudolabels",
                                description="Pseudolabel quality (teacher, each student round) against real labels of held-out users.")
    p.add_argument("--labels", required=True, help="real labels of the held-out real-labelled users")
    p.add_argument("--source", action="append", required=True, metavar="NAME=FILE",
                   help="labels or predictions CSV of one source, e.g. teacher=teacher.csv; repeatable")
    p.add_argument("--out", required=True)
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        result = pseudolabel_quality(args.labels, [_named(s) for s in args.source], args.out, args.bootstrap)
    except (OSError, ValueError) as exc:
        print(f"phq eval pseudolabels: {exc}", file=sys.stderr)
        return 1
    for name, r in result.items():
        print(json.dumps({"source": name, "n": r["n"], **{k: r.get(k) for k in KEYS}}))
    return 0


def ablation_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq eval ablation",
                                description="Real-only vs real-plus-pseudolabel models on the same test users (paired bootstrap).")
    p.add_argument("--a", required=True, metavar="NAME=PREDICTIONS.csv", help="e.g. real_only=round_0/test_predictions.csv")
    p.add_argument("--b", required=True, metavar="NAME=PREDICTIONS.csv", help="e.g. real_plus_pseudo=round_2/test_predictions.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        result = ablation(_named(args.a), _named(args.b), args.out, args.bootstrap)
    except (OSError, ValueError) as exc:
        print(f"phq eval ablation: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result["difference"]))
    return 0
