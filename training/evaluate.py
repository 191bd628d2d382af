"""`phq eval`: metrics.json, plots (PNG) and a Markdown report from a predictions CSV
(`user_id,y_true,y_pred`, CONTRACT section 5), or from a model scored over events and labels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training import metrics as M
from training.report import DISCLAIMER, fmt, plt_module, read_predictions, write_predictions  # noqa: F401 (re-exported)

ROC_THRESHOLDS = (5, 10, 15, 20)


# --- plots -----------------------------------------------------------------------------------

def plot_scatter(y, p, path: Path, tag: str) -> None:
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(5, 5))
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(y))
    ax.scatter(y + jitter, p, s=12, alpha=0.6)
    ax.plot([0, 27], [0, 27], "k--", lw=1, label="y = x")
    for cut in (5, 10, 15, 20):
        ax.axvline(cut, color="grey", lw=0.5, alpha=0.5)
    ax.set(xlim=(-1, 28), ylim=(-1, 28), xlabel="PHQ-9 total (questionnaire)", ylabel="predicted score",
           title=f"Predicted vs true{tag}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(y, p, path: Path, tag: str) -> None:
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(5, 5))
    for t in ROC_THRESHOLDS:
        pos = y >= t
        a = M.auc(pos, p)
        if a is None:
            continue
        fpr, tpr = M.roc_curve(pos, p)
        ax.plot(fpr, tpr, label=f"PHQ-9 >= {t}: AUC {a:.2f} (n+ {pos.sum()}, n- {(~pos).sum()})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC curves{tag}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_auc_by_threshold(m: dict, path: Path, tag: str) -> None:
    plt = plt_module()
    ts = [t for t in M.THRESHOLDS if m["auc_by_threshold"][str(t)] is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if ts:
        vals = [m["auc_by_threshold"][str(t)] for t in ts]
        cis = [m["ci95"]["auc_by_threshold"][str(t)] for t in ts]
        lo = [v - c[0] if c else 0 for v, c in zip(vals, cis)]
        hi = [c[1] - v if c else 0 for v, c in zip(vals, cis)]
        ax.errorbar(ts, vals, yerr=[lo, hi], fmt="o-", capsize=3)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set(xlabel="threshold t (positive: PHQ-9 >= t)", ylabel="AUC (95% bootstrap CI over users)",
           ylim=(0.3, 1.02), xticks=list(M.THRESHOLDS), title=f"AUC by threshold{tag}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_calibration(m: dict, path: Path, tag: str) -> None:
    plt = plt_module()
    cal = m["calibration"]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([c["mean_pred"] for c in cal], [c["mean_true"] for c in cal], "o-", label="decile of predictions")
    ax.plot([0, 27], [0, 27], "k--", lw=1, label="perfect calibration")
    ax.set(xlim=(0, 27), ylim=(0, 27), xlabel="mean predicted score", ylabel="mean questionnaire score",
           title=f"Calibration by decile{tag}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- report ----------------------------------------------------------------------------------

def report_markdown(m: dict, title: str, synthetic: bool) -> str:
    ci = m["ci95"]
    lines = [f"# {title}", ""]
    if synthetic:
        lines += ["**Synthetic data.** These figures come from `phq synth` users, not people.", ""]
    lines += [f"_{DISCLAIMER}_", "",
              f"{m['counts']['n_rows']} predictions from {m['counts']['n_users']} users; 95% intervals are "
              f"percentile bootstrap over users ({m['bootstrap']['replicates']} replicates).", "",
              "| metric | value [95% CI] |", "| --- | --- |"]
    for k, name in [("mae", "MAE"), ("rmse", "RMSE"), ("pearson_r", "Pearson r"),
                    ("spearman_rho", "Spearman rho"), ("auc_10", "AUC (PHQ-9 >= 10)")]:
        lines.append(f"| {name} | {fmt(m[k], ci[k])} |")
    lines += ["", "## AUC by threshold", "", "| t | AUC [95% CI] | positive | negative |", "| --- | --- | --- | --- |"]
    for t in M.THRESHOLDS:
        c = m["counts"]["by_threshold"][str(t)]
        lines.append(f"| {t} | {fmt(m['auc_by_threshold'][str(t)], ci['auc_by_threshold'][str(t)])} "
                     f"| {c['positive']} | {c['negative']} |")
    lines += ["", "## Error by severity band (of the questionnaire score)", "",
              "| band | n | MAE | bias (pred - true) |", "| --- | --- | --- | --- |"]
    for band, e in m["error_by_band"].items():
        lines.append(f"| {band} | {e['n']} | {fmt(e['mae'])} | {fmt(e['bias'])} |")
    lines += ["", "## Plots", "", "![predicted vs true](scatter.png)", "", "![ROC curves](roc.png)", "",
              "![AUC by threshold](auc_by_threshold.png)", "", "![calibration](calibration.png)", ""]
    return "\n".join(lines)


def evaluate_arrays(users, y, p, out: str | Path, title: str = "PHQ-9 evaluation", n_boot: int = 1000,
                    seed: int = 0, synthetic: bool | None = None) -> dict:
    """Write metrics.json, four PNG plots and report.md to `out`; return the metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    users, y, p = np.asarray(users), np.asarray(y, float), np.asarray(p, float)
    if synthetic is None:
        synthetic = bool(len(users)) and all(str(u).startswith("synthetic-") for u in users)
    m = M.all_metrics(users, y, p, n_boot=n_boot, seed=seed)
    m["synthetic"] = synthetic
    (out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    tag = " (synthetic data)" if synthetic else ""
    plot_scatter(y, p, out / "scatter.png", tag)
    plot_roc(y, p, out / "roc.png", tag)
    plot_auc_by_threshold(m, out / "auc_by_threshold.png", tag)
    plot_calibration(m, out / "calibration.png", tag)
    (out / "report.md").write_text(report_markdown(m, title, synthetic))
    return m


def main(argv: list[str]) -> int:
    if argv and argv[0] == "realtext":  # held-out real human text, beside two baselines
        from training import realtext

        return realtext.main(argv[1:])
    if argv and argv[0] in ("pseudolabels", "pool", "ablation", "seeds"):  # the reviewers' analyses
        from training import analyses

        return {"pseudolabels": analyses.pseudolabels_main, "pool": analyses.pool_main, "ablation": analyses.ablation_main,
                "seeds": analyses.seeds_main}[argv[0]](argv[1:])
    p = argparse.ArgumentParser(
        epilog="The reviewers' analyses: `phq eval pseudolabels|pool|ablation|seeds --help`; real human text: "
        "`phq eval realtext --help`.",
        prog="phq eval",
        description="Metrics, plots and a report from PREDICTIONS.csv (user_id,y_true,y_pred), "
        "or from --model scored over --events and --labels.",
    )
    p.add_argument("predictions", nargs="?", help="CSV with columns user_id,y_true,y_pred")
    p.add_argument("--out", required=True, help="directory for metrics.json, the plots and report.md")
    p.add_argument("--model", help="model directory to score with (instead of a predictions CSV)")
    p.add_argument("--events", help="chat events (JSON lines) to score, with --model")
    p.add_argument("--labels", help="questionnaire labels CSV, with --model")
    p.add_argument("--allow-training-users", action="store_true",
                   help="with --model: evaluate even users the model trained or was selected on (flagged in metrics.json)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates over users")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--title", default="PHQ-9 evaluation")
    args = p.parse_args(argv)
    try:
        if args.model:
            if not (args.events and args.labels) or args.predictions:
                print("phq eval: --model needs --events and --labels, and no PREDICTIONS.csv", file=sys.stderr)
                return 2
            from training.data import predict_for_labels
            from training.train import users_seen_in_training

            users, y, pred = predict_for_labels(args.model, args.events, args.labels)
            seen = users_seen_in_training(args.model, set(users.tolist()))
            if seen and not args.allow_training_users:
                print(f"phq eval: {len(seen)} of the {len(set(users.tolist()))} users in --labels trained or selected this "
                      "model (its training-users.json), so their scores overstate accuracy: evaluate on other users, or pass "
                      "--allow-training-users to evaluate anyway with them flagged", file=sys.stderr)
                return 1
            if seen is None:
                print(f"phq eval: {args.model} does not record its training users; make sure --labels holds none of them",
                      file=sys.stderr)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_predictions(Path(args.out) / "predictions.csv", users, y, pred,
                              {"in_training": [u in (seen or ()) for u in users]})
        elif args.predictions:
            users, y, pred = read_predictions(args.predictions)
        else:
            print("phq eval: give PREDICTIONS.csv, or --model with --events and --labels", file=sys.stderr)
            return 2
        m = evaluate_arrays(users, y, pred, args.out, title=args.title, n_boot=args.bootstrap, seed=args.seed)
        if args.model:  # how many evaluated users the model had seen in training (None: it does not say)
            m["training_users"] = None if seen is None else len(seen)
            (Path(args.out) / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    except (OSError, ValueError) as exc:
        print(f"phq eval: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: m[k] for k in ("n", "mae", "rmse", "pearson_r", "spearman_rho", "auc_10")}))
    print(f"wrote {args.out}/metrics.json, report.md and plots")
    return 0
