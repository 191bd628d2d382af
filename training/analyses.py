"""The reviewers' two analyses. Reviewer 1, pseudolabel quality: against real labels of held-out users
(`phq eval pseudolabels`) and, on synthetic data, on the unlabelled pool itself against its latent truth
(`phq eval pool`). Reviewer 2, the ablation: two arms on the same test users with a paired bootstrap
(`phq eval ablation`), and arms with equal optimiser steps over several seeds, with their spread
(`phq eval seeds`).
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


# --- pseudolabels on the pool, against its latent truth ------------------------------------------------

def pool_quality(truth_path: str | Path, sources: list[tuple[str, str]], pool_size: int, out: str | Path,
                 n_boot: int = 1000, seed: int = 0) -> dict:
    """Each source's pool labels against the latent truth at the same user and time (`phq synth`'s
    never-for-training file, read here only to measure). A labels file with a `kept` column is measured
    twice: every label, and the labels the agreement filter kept; coverage is kept labels per pool user."""
    from training.synth import read_truth, truth_at

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, by_user = read_truth(truth_path)
    result = {}
    for name, path in sources:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(row for row in f if not row.startswith("#")))
        scored = []
        for r in rows:
            truth = truth_at(header, by_user, r["user_id"], parse_survey_date(r["survey_date"]))
            if truth is None:
                raise ValueError(f"{path}: {r['user_id']} at {r['survey_date']} is not in the truth file {truth_path}")
            scored.append((r["user_id"], float(truth["phq9_total"]), float(r["phq9_total"]), r.get("kept", "True") == "True"))
        entry = {"n_all": len(scored), "n_kept": sum(k for *_, k in scored), "coverage": sum(k for *_, k in scored) / pool_size}
        spreads = [float(r["spread"]) for r in rows if r.get("spread") not in (None, "")]
        if len(spreads) == len(scored) > 2:  # does the uncertainty estimate know when the label is wrong?
            entry["spread_error_spearman"] = M.spearman(np.array(spreads), np.array([abs(p - y) for _, y, p, _ in scored]))
        for part, keep in (("all", lambda k: True), ("kept", lambda k: k)):
            picked = [(u, y, p) for u, y, p, k in scored if keep(k)]
            if len(picked) < 2:
                entry[part] = None
                continue
            users, y, p = (np.array(c) for c in zip(*picked))
            m = M.all_metrics(users, y.astype(float), p.astype(float), n_boot=n_boot, seed=seed)
            entry[part] = {**{k: m[k] for k in KEYS}, "bias": float(np.mean(p.astype(float) - y.astype(float))),
                           "ci95": {k: m["ci95"][k] for k in KEYS}, "auc_by_threshold": m["auc_by_threshold"]}
        result[name] = entry
    (out / "pool_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot_auc_lines({f"{n} (kept)": e["kept"] for n, e in result.items() if e["kept"]}, out / "pool_auc_by_threshold.png",
                    "Pool pseudolabels vs latent truth: AUC by threshold (synthetic data)")
    lines = ["# Pseudolabels on the unlabelled pool, against its latent truth", "",
             "**Synthetic data.** The truth is `phq synth`'s never-for-training record of each pool user's days with "
             "each symptom; no real pool has one.", "", f"_{DISCLAIMER}_", "",
             "| source | kept / all (coverage) | MAE kept | MAE all | Pearson r kept | bias kept | AUC (>= 10) kept "
             "| Spearman(spread, error) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in result.items():
        k, a = e["kept"] or {}, e["all"] or {}
        lines.append(f"| {name} | {e['n_kept']} / {e['n_all']} ({e['coverage']:.0%}) | {fmt(k.get('mae'), (k.get('ci95') or {}).get('mae'))} "
                     f"| {fmt(a.get('mae'))} | {fmt(k.get('pearson_r'), (k.get('ci95') or {}).get('pearson_r'))} "
                     f"| {fmt(k.get('bias'))} | {fmt(k.get('auc_10'))} | {fmt(e.get('spread_error_spearman'))} |")
    (out / "pool_quality.md").write_text("\n".join(lines) + "\n")
    return result


# --- step-matched arms over seeds ---------------------------------------------------------------------

def seeded_ablation(arms: dict[str, list[str]], reference: str, out: str | Path) -> dict:
    """Arms (each a predictions file per seed, seeds in the same order) on the same test rows: each arm's
    metrics per seed, their mean and spread over seeds, and each arm minus `reference` seed by seed."""
    from training.report import read_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if reference not in arms:
        raise ValueError(f"reference arm {reference!r} is not among the arms {', '.join(arms)}")
    n_seeds = {len(files) for files in arms.values()}
    if len(n_seeds) != 1:
        raise ValueError("every arm needs one predictions file per seed, the same seeds in the same order")
    keys = None
    per_seed: dict[str, list[dict]] = {}
    for name, files in arms.items():
        per_seed[name] = []
        for path in files:
            users, y, p = read_predictions(path)
            row_keys = _keys(path)
            order = sorted(range(len(users)), key=lambda i: row_keys[i])
            k = [row_keys[i] for i in order]
            if keys is None:
                keys = k
            elif k != keys:
                raise ValueError(f"{path} does not cover the same test rows as the other arms")
            m = M.point_metrics(y[order], p[order])
            per_seed[name].append({key: m[key] for key in KEYS})
    result = {"reference": reference, "seeds": n_seeds.pop(), "n": len(keys), "arms": {}}
    for name, rows in per_seed.items():
        summary = {}
        for key in KEYS:
            vals = np.array([r[key] for r in rows if r[key] is not None], float)
            ref = np.array([r[key] for r in per_seed[reference]], dtype=object)
            diff = np.array([a[key] - b for a, b in zip(rows, ref) if a[key] is not None and b is not None], float)
            summary[key] = {"mean": float(vals.mean()) if len(vals) else None, "sd": float(vals.std(ddof=1)) if len(vals) > 1 else None,
                            "min": float(vals.min()) if len(vals) else None, "max": float(vals.max()) if len(vals) else None,
                            "minus_reference_mean": float(diff.mean()) if len(diff) else None,
                            "minus_reference_sd": float(diff.std(ddof=1)) if len(diff) > 1 else None}
        result["arms"][name] = {"per_seed": rows, **summary}
    (out / "seeds_ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot_seeds(result, out / "seeds_ablation.png")
    lines = ["# Ablation: arms with equal optimiser steps, over seeds", "", f"_{DISCLAIMER}_", "",
             f"{result['n']} test labels; {result['seeds']} seeds per arm; spread is the standard deviation over seeds.", "",
             f"| arm | MAE mean (sd) | Pearson r mean (sd) | AUC (>= 10) mean (sd) | MAE minus {reference} mean (sd) |",
             "| --- | --- | --- | --- | --- |"]
    for name, a in result["arms"].items():
        lines.append(f"| {name} | {_msd(a['mae'])} | {_msd(a['pearson_r'])} | {_msd(a['auc_10'])} "
                     f"| {_msd(a['mae'], 'minus_reference_')} |")
    lines += ["", "![metrics of each arm by seed](seeds_ablation.png)", ""]
    (out / "seeds_ablation.md").write_text("\n".join(lines))
    return result


def _msd(s: dict, prefix: str = "") -> str:
    mean, sd = s.get(prefix + "mean"), s.get(prefix + "sd")
    return "n/a" if mean is None else f"{mean:.3f}" + (f" ({sd:.3f})" if sd is not None else "")


def _plot_seeds(result: dict, path: Path) -> None:
    plt = plt_module()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    names = list(result["arms"])
    for ax, key, label in ((axes[0], "mae", "MAE"), (axes[1], "pearson_r", "Pearson r")):
        for x, name in enumerate(names):
            vals = [r[key] for r in result["arms"][name]["per_seed"] if r[key] is not None]
            ax.scatter([x] * len(vals), vals, s=18, alpha=0.7)
            if vals:
                ax.hlines(np.mean(vals), x - 0.25, x + 0.25, color="k", lw=1)
        ax.set(xticks=range(len(names)), ylabel=f"{label} (each dot a seed)", title=label)
        ax.set_xticklabels(names, rotation=15, fontsize=8)
    fig.suptitle("Step-matched arms over seeds (synthetic data)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def pool_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq eval pool", description="Pool pseudolabels against `phq synth`'s latent truth.")
    p.add_argument("--truth", required=True, help="the never-for-training truth file `phq synth` wrote")
    p.add_argument("--source", action="append", required=True, metavar="NAME=FILE", help="pool labels CSV; repeatable")
    p.add_argument("--pool-size", type=int, required=True, help="unlabelled users in the pool (for coverage)")
    p.add_argument("--out", required=True)
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        result = pool_quality(args.truth, [_named(s) for s in args.source], args.pool_size, args.out, args.bootstrap)
    except (OSError, ValueError) as exc:
        print(f"phq eval pool: {exc}", file=sys.stderr)
        return 1
    for name, e in result.items():
        print(json.dumps({"source": name, "n_kept": e["n_kept"], "mae_kept": (e["kept"] or {}).get("mae")}))
    return 0


def seeds_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq eval seeds", description="Step-matched arms over seeds: spread and differences.")
    p.add_argument("--arm", action="append", required=True, metavar="NAME=F1,F2,...",
                   help="an arm's predictions files, one per seed; repeatable")
    p.add_argument("--reference", required=True, help="the arm the others are compared with, e.g. real_only")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        arms = {name: files.split(",") for name, files in (_named(a) for a in args.arm)}
        result = seeded_ablation(arms, args.reference, args.out)
    except (OSError, ValueError) as exc:
        print(f"phq eval seeds: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({n: {"mae": a["mae"]} for n, a in result["arms"].items()}))
    return 0
