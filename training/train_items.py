"""`phq train --base-model coldstart` (or an item-model directory): fit the item model's heads on real
labels plus pseudolabels, keeping what the encoder knows.

Reads top to bottom: settings (plain data); data and user-level splits; the frozen encoder reads every
clause once; the heads (per-item bias, a linear probe on the clause embedding, the softmax's temperature
and "none" nearness, and per item the mention probability and prior of the day rule) are fitted with
item-level and total losses, pulled toward the cold-start values, with early stopping on validation
MAE; then the model directory, its calibration from held-out users, the comparison with the cold-start
model on held-out users and on real human text, and installation only if it reads real text at least
as well as the cold-start model.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# The heads' parameters a run fits. The softmax's temperature and "none" nearness are how the model reads
# any clause, so they stay as the base model has them (fitting them to one data set's labels changed how
# real text reads); `--set trainable=[...]` can add them.
TRAINABLE = ("item_bias", "logit_mention", "logit_prior", "log_prior_days", "probe")

# -----------------------------------------------------------------------------------------------
# settings: every knob of a run, as plain data; `--set key=value` overrides any of them
CONFIG = dict(
    base_model="coldstart",  # "coldstart" (built from the shipped encoder) or an item-model directory
    steps=400,  # optimiser steps at most
    batch_size=32,  # labelled windows per step, drawn with the run's seed (all of them when fewer)
    lr=0.02,
    probe_lr=0.003,
    probe_l2=1e-2,  # weight decay of the probe: what the statements already say is not relearnt
    anchor_l2=0.5,  # pull of the scalar parameters toward the base model's values
    item_weight=1.0,  # loss on item scores (labels with item answers)
    total_weight=0.3,  # loss on the total (every label), in units of 3 points
    eval_every=10,
    patience=8,  # evaluations without a better validation MAE before stopping
    val_frac=0.15,
    test_frac=0.15,
    seed=0,
    window_days=14.0,
    provenance_weights={"gt": 1.0, "teacher": 0.5, "student": 0.5},
    name="items",
    install=True,  # install into PHQ_MODEL_DIR if it reads real text at least as well as the cold-start model
    model_dir="",  # empty: PHQ_MODEL_DIR
    realtext=True,  # run the real-text checks (needed to install)
    realtext_data="",  # empty: ../shared/data
    realtext_boot=200,
    # Keep reading real people: on the real human texts that are not held out (../shared/data's training
    # splits, unlabelled), the fitted heads' clause evidence is pulled toward the base model's.
    realtext_anchor=1.0,  # weight of that pull, on log evidence (0: off; the selection rule below stays)
    trainable=list(TRAINABLE),
    realtext_select=True,  # only steps that read real text's training splits at least as well are candidates
    realtext_tolerance=0.0,  # ... at most this below the base model's figures there
    realtext_anchor_texts=3000,  # at most this many real texts (all CounselChat training questions, then SAD)
    quiet=False,
)




def is_item_base(base: str) -> bool:
    """Whether `phq train --base-model` names the item model (so `phq train` hands the run here)."""
    if base == "coldstart":
        return True
    try:
        from scoring.model import read_meta

        return read_meta(base).kind == "items"
    except (FileNotFoundError, ValueError):
        return False


def resolve_base(base: str, tmp: Path) -> Path:
    if base == "coldstart":
        from scoring.coldstart import build_coldstart
        from scoring.engine import coldstart_dir

        return build_coldstart(coldstart_dir(str(tmp)))
    return Path(base)


# -----------------------------------------------------------------------------------------------
# data: windows at survey dates, user-level splits (synth's recorded split when the labels carry one)

def load_examples(events: str, label_files: list[str], window_days: float):
    from training.data import labelled_examples, read_labels, read_transcripts

    turns, stats = read_transcripts(events)
    labels = [lab for f in label_files for lab in read_labels(f)]
    examples, empty = labelled_examples(turns, labels, window_days)
    by_key = {(lab.user_id, lab.survey_ts): lab for lab in labels}
    for ex in examples:
        lab = by_key.get((ex.user_id, ex.survey_ts))
        ex.extra["items"] = lab.items if lab is not None else None
    return examples, labels, empty, stats


def make_splits(examples, labels, cfg) -> dict[str, set[str]]:
    """Only real labels choose validation and test users; pseudolabelled users only ever train."""
    from training import data

    splits = data.splits_from_labels([lab for lab in labels if lab.provenance == "gt"])
    real_users = sorted({ex.user_id for ex in examples if ex.provenance == "gt"})
    if splits is None:
        splits = data.split_users(real_users, cfg["seed"], cfg["val_frac"], cfg["test_frac"])
    held = splits["val"] | splits["test"]
    splits["train"] = {ex.user_id for ex in examples if ex.user_id not in held}
    return splits


# -----------------------------------------------------------------------------------------------
# inputs: every clause read once by the frozen encoder; facet nearness computed once

class Batch:
    """The model inputs and targets of a set of examples, as tensors."""

    def __init__(self, model, examples, cfg):
        import torch

        rendered = [model.render(ex.turns) for ex in examples]
        rows, self.weights, self.spans, self.day, self.window = model.batch_inputs(rendered)
        self.emb = model.encoder.encode_ids(rows)
        with torch.no_grad():
            self.near = model.heads.facet_nearness(self.emb)
        self.n_days = torch.tensor([r.n_days for r in rendered])
        self.n = len(examples)
        self.total = torch.tensor([float(ex.total) if ex.total is not None else float("nan") for ex in examples])
        items = [ex.extra.get("items") for ex in examples]
        self.items = torch.tensor([list(map(float, i)) if i else [0.0] * 9 for i in items])
        self.has_items = torch.tensor([1.0 if i else 0.0 for i in items])
        weights = cfg["provenance_weights"]
        self.sample_weight = torch.tensor([float(weights.get("student" if ex.provenance.startswith("student") else
                                                             ex.provenance, 1.0)) for ex in examples])

    def predict(self, heads):
        probs = heads.probs_from_nearness(self.near, self.emb, self.weights)
        return heads.aggregate(probs, self.day, self.window, self.spans, self.n, self.n_days)


class Anchor:
    """Unlabelled real human text (the training splits of ../shared/data, never the held-out ones), read
    once: its clauses' nearness and embeddings, and the base model's evidence on them. It pulls the
    fitted heads' evidence toward the base model's, and its weak labels (CounselChat topics, SAD
    severity) tell whether a step of the fit still reads real text at least as well as the base model."""

    def __init__(self, model, cfg):
        import numpy as np
        import torch

        from training import realtext

        data = Path(cfg["realtext_data"]) if cfg.get("realtext_data") else realtext.default_data_dir()
        self.n = 0
        if not (data / "counsel-chat" / "questions.csv").is_file():
            return
        cc = realtext.load_counselchat(data, held_out=False)
        sad = realtext.load_sad(data, held_out=False)[: max(0, cfg["realtext_anchor_texts"] - len(cc))]
        rendered = [model.render(realtext.as_window(t)) for t in cc + sad]
        rows, self.weights, self.spans, self.day, self.window = model.batch_inputs(rendered)
        self.n_days = torch.tensor([r.n_days for r in rendered])
        self.emb = model.encoder.encode_ids(rows)
        self.n = len(rendered)
        self.n_cc = len(cc)
        self.depression = np.array([t.label == "depression" for t in cc])
        self.severity = np.array([t.severity for t in sad])
        with torch.no_grad():
            self.near = model.heads.facet_nearness(self.emb)
            self.base = model.heads.probs_from_nearness(self.near, self.emb, self.weights)
            self.base_reading = self.reading(model.heads)

    def loss(self, heads):
        """Mean squared difference of log evidence: weak evidence, which ranks most short texts, counts too."""
        import torch

        if not self.n:
            return 0.0
        now = heads.probs_from_nearness(self.near, self.emb, self.weights)
        return ((torch.log(now + 1e-4) - torch.log(self.base + 1e-4)) ** 2).mean()

    def reading(self, heads) -> tuple[float, float]:
        """(CounselChat depression AUC, SAD severity Spearman) on the training splits' texts."""
        import torch

        from training.metrics import auc, spearman

        with torch.no_grad():
            probs = heads.probs_from_nearness(self.near, self.emb, self.weights)
            totals = heads.aggregate(probs, self.day, self.window, self.spans, self.n, self.n_days).sum(1).numpy()
        return (auc(self.depression, totals[: self.n_cc]) or 0.0, spearman(self.severity, totals[self.n_cc:]) or 0.0)

    def reads_as_well(self, heads, tolerance: float = 0.0) -> bool:
        if not self.n:
            return True
        now = self.reading(heads)
        return all(a >= b - tolerance - 1e-9 for a, b in zip(now, self.base_reading))


def huber(x, delta: float = 1.0):
    import torch

    a = x.abs()
    return torch.where(a < delta, 0.5 * a * a, delta * (a - 0.5 * delta))


def loss_of(heads, batch: Batch, anchors: dict, cfg, real: Anchor | None = None, chosen=None) -> object:
    """The training loss; `chosen` (a 0/1 mask of the batch's windows) is this step's minibatch."""
    pred = batch.predict(heads)
    weight = batch.sample_weight if chosen is None else batch.sample_weight * chosen
    item_loss = (huber(pred - batch.items).mean(1) * batch.has_items * weight).sum()
    total_loss = (huber((pred.sum(1) - batch.total) / 3.0) * weight).sum()
    denom = weight.sum().clamp(min=1e-6)
    loss = (cfg["item_weight"] * item_loss + cfg["total_weight"] * total_loss) / denom
    anchor = sum(((heads.t[k] - v) ** 2).sum() for k, v in anchors.items())
    loss = loss + cfg["anchor_l2"] * anchor / max(1, len(anchors))
    if real is not None and real.n and cfg["realtext_anchor"] > 0:
        loss = loss + cfg["realtext_anchor"] * real.loss(heads)
    return loss


def mae(heads, batch: Batch) -> float:
    import torch

    with torch.no_grad():
        return float((batch.predict(heads).sum(1) - batch.total).abs().mean())


# -----------------------------------------------------------------------------------------------
# the run

def fit(model, train: Batch, val: Batch, cfg, say, real: Anchor | None = None) -> dict:
    """Fit the heads in place; returns the run's history. The kept values are the best validation step's
    among the steps that still read the real texts' training splits at least as well as the base model
    (weak labels: CounselChat topics, SAD severity); with none, the base model's (step 0)."""
    import torch

    heads = model.heads
    trainable = [k for k in cfg.get("trainable", TRAINABLE)]
    anchors = {k: heads.t[k].detach().clone() for k in trainable if k != "probe"}
    for k in trainable:
        heads.t[k] = heads.t[k].detach().clone().requires_grad_(True)
    groups = [{"params": [heads.t[k] for k in trainable if k != "probe"], "lr": cfg["lr"], "weight_decay": 0.0}]
    if "probe" in trainable:
        groups.append({"params": [heads.t["probe"]], "lr": cfg["probe_lr"], "weight_decay": cfg["probe_l2"]})
    opt = torch.optim.AdamW(groups)
    best = {"step": 0, "val_mae": mae(heads, val) if val.n else math.inf,
            "state": {k: heads.t[k].detach().clone() for k in trainable}}
    history = [{"step": 0, "val_mae": best["val_mae"], "train_mae": mae(heads, train)}]
    stale = 0
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    for step in range(1, cfg["steps"] + 1):
        opt.zero_grad()
        chosen = None
        if train.n > cfg["batch_size"]:
            chosen = torch.zeros(train.n)
            chosen[torch.randperm(train.n, generator=gen)[: cfg["batch_size"]]] = 1.0
        loss = loss_of(heads, train, anchors, cfg, real, chosen)
        loss.backward()
        opt.step()
        if step % cfg["eval_every"] and step != cfg["steps"]:
            continue
        v = mae(heads, val) if val.n else loss.item()
        reads = real.reads_as_well(heads, cfg["realtext_tolerance"]) if real is not None else True
        reads = reads or not cfg["realtext_select"]
        history.append({"step": step, "loss": loss.item(), "val_mae": v, "train_mae": mae(heads, train),
                        "reads_real_text_as_well": reads})
        say(f"step {step}: loss {loss.item():.4f}, train MAE {history[-1]['train_mae']:.2f}, validation MAE {v:.2f}"
            + ("" if reads else " (reads real text worse: not a candidate)"))
        if reads and v < best["val_mae"] - 1e-4:
            best = {"step": step, "val_mae": v, "state": {k: heads.t[k].detach().clone() for k in trainable}}
            stale = 0
        else:
            stale += 1
            if stale >= cfg["patience"]:
                break
    for k, v in best["state"].items():
        heads.t[k] = v
    return {"best_step": best["step"], "best_val_mae": best["val_mae"], "history": history}


def _totals(model, batch: Batch) -> list[float]:
    import torch

    with torch.no_grad():
        return batch.predict(model.heads).sum(1).clamp(0, 27).tolist()


def _baselines(part: dict, predictions: dict, model_dirs: dict) -> dict:
    """The trained model, the cold-start model and the baselines (training mean, length only, TF-IDF +
    ridge, any --baseline-model) on the same held-out test users, fit on the same real training labels."""
    from training import baselines

    test = part["test"]
    if not test:
        return {}
    fitted = baselines.run(baselines.standard(model_dirs), [e for e in part["train"] if e.provenance == "gt"], test)
    return baselines.metrics_table([e.total for e in test], {**predictions, **fitted})


def _record_training_users(model_dir: Path, users: set[str]) -> None:
    """Hashes of the users the model trained or was selected on, so `phq eval --model` can refuse them."""
    from training.train import TRAINING_USERS_FILE, _user_hash

    body = {"hash": "sha256 of user_id", "users": sorted(_user_hash(u) for u in users)}
    (model_dir / TRAINING_USERS_FILE).write_text(json.dumps(body) + "\n")


def held_out_metrics(model, batch: Batch) -> dict:
    import numpy as np
    import torch

    from training.metrics import auc, pearson

    with torch.no_grad():
        pred = batch.predict(model.heads).sum(1).numpy()
    y = batch.total.numpy()
    if not len(y):
        return {"n": 0}
    return {"n": int(len(y)), "mae": float(np.abs(pred - y).mean()), "pearson_r": pearson(y, pred),
            "auc_10": auc(y >= 10, pred)}


def write_model(base: Path, out: Path, model, meta_fields: dict) -> Path:
    """The base directory's encoder and statements, the fitted heads, and a new phq.json."""
    from scoring.itemmodel import HEADS_FILE, write_heads
    from scoring.model import META_FILE, read_meta, write_atomically
    from training.train import TRAINING_USERS_FILE

    meta = read_meta(base)
    for k, v in meta_fields.items():
        setattr(meta, k, v)
    meta.created_at = datetime.now(UTC).isoformat(timespec="seconds")

    def fill(tmp: Path) -> None:
        for f in base.iterdir():
            if f.is_file() and f.name not in (HEADS_FILE, META_FILE, TRAINING_USERS_FILE):
                shutil.copy2(f, tmp / f.name)
        write_heads(tmp, model.heads)
        (tmp / META_FILE).write_text(meta.to_json())

    return write_atomically(out, fill)


def realtext_headline(model_dir: Path, cfg) -> dict | None:
    from training import realtext

    data_dir = Path(cfg["realtext_data"]) if cfg["realtext_data"] else realtext.default_data_dir()
    if not (data_dir / "counsel-chat" / "questions.csv").is_file():
        return None
    result = realtext.run(model_dir, data_dir, n_boot=cfg["realtext_boot"], progress=not cfg["quiet"], baselines=False)
    return result


def run(events: str, label_files: list[str], run_dir: Path, cfg: dict) -> dict:
    import torch

    from phq.settings import Settings
    from scoring import calibration
    from scoring.engine import ItemScorer
    from training.data import fingerprint

    def say(msg: str) -> None:
        if not cfg["quiet"]:
            print(f"phq train: {msg}", file=sys.stderr, flush=True)

    torch.manual_seed(cfg["seed"])
    run_dir.mkdir(parents=True, exist_ok=True)
    base = resolve_base(cfg["base_model"], run_dir)
    model = ItemScorer.load(base).model
    base_version = model.meta.model_version
    examples, labels, empty, _stats = load_examples(events, label_files, cfg["window_days"])
    if not examples:
        raise ValueError("no label has a window with a user turn: check that --events and --labels are the same users and dates")
    splits = make_splits(examples, labels, cfg)
    part = {name: [ex for ex in examples if ex.user_id in users and (name == "train" or ex.provenance == "gt")]
            for name, users in splits.items()}
    say(f"{len(examples)} labelled windows ({empty} without a user turn skipped); users train {len(splits['train'])}, "
        f"validation {len(splits['val'])}, test {len(splits['test'])}")
    started = time.monotonic()
    batches = {name: Batch(model, exs, cfg) for name, exs in part.items()}
    say(f"encoder read {sum(int(b.emb.shape[0]) for b in batches.values())} clauses in {time.monotonic() - started:.0f}s")
    real = Anchor(model, cfg) if cfg["realtext_anchor"] > 0 or cfg["realtext_select"] else None
    if real is not None and real.n:
        say(f"real-text anchor: {real.n} unlabelled real texts (the training splits of ../shared/data)")
    before = {name: held_out_metrics(model, b) for name, b in batches.items() if name != "train"}
    base_test_pred = _totals(model, batches["test"])
    history = fit(model, batches["train"], batches["val"], cfg, say, real)
    after = {name: held_out_metrics(model, b) for name, b in batches.items() if name != "train"}

    cal_part = "test" if batches["test"].n >= 10 else "val"
    with torch.no_grad():
        cal_pred = batches[cal_part].predict(model.heads).sum(1).clamp(0, 27).tolist()
    cal = calibration.fit(batches[cal_part].total.tolist(), cal_pred, source=f"{cal_part} users of this run",
                          model_version="") if len(cal_pred) >= 10 else None
    fp = fingerprint([ex for ex in examples if ex.user_id in splits["train"]])
    version = f"{cfg['name']}-{datetime.now(UTC):%Y%m%d}-{fp.split(':')[-1][:8]}"
    if cal:
        cal["model_version"] = version
    out = write_model(base, run_dir / "model", model, {
        "model_version": version, "data_fingerprint": fp, "base_model": base_version, "calibration": cal})
    _record_training_users(out, splits["train"] | splits["val"])
    (run_dir / "splits.json").write_text(json.dumps({k: sorted(v) for k, v in splits.items()}, indent=1) + "\n")

    report = {"model_version": version, "base_model": base_version, "train": history,
              "held_out": {"base": before, "trained": after}, "calibration": cal,
              "baselines": _baselines(part, {version: _totals(model, batches["test"]), "cold_start_items": base_test_pred},
                                      cfg.get("baseline_models") or {})}
    if cfg["realtext"]:
        say("real-text checks: the trained model and the cold-start model")
        trained_rt, base_rt = realtext_headline(out, cfg), realtext_headline(base, cfg)
        report["realtext"] = {"trained": trained_rt, "base": base_rt}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    installed = install_if_better(out, report, cfg, Settings())
    report["installed"] = str(installed) if installed else None
    print_summary(report)
    return report


def at_least_as_good_report(report: dict) -> bool:
    from training.realtext import at_least_as_good

    rt = report.get("realtext")
    return bool(rt and rt.get("trained") and rt.get("base") and at_least_as_good(rt["trained"], rt["base"]))


def install_if_better(model_dir: Path, report: dict, cfg, settings) -> Path | None:
    """The install rule: into PHQ_MODEL_DIR only if it reads real text at least as well as the cold-start model."""
    if not cfg["install"] or not at_least_as_good_report(report):
        return None
    dest = Path(cfg["model_dir"] or settings.model_dir) / report["model_version"]
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model_dir, dest)
    return dest


def print_summary(report: dict) -> None:
    def fmt(m):
        return "n/a" if not m or not m.get("n") else f"MAE {m['mae']:.2f}, r {m['pearson_r'] or float('nan'):.2f} (n {m['n']})"

    lines = [f"model {report['model_version']} (from {report['base_model']})",
             f"  held-out test users: cold start {fmt(report['held_out']['base'].get('test'))}; "
             f"trained {fmt(report['held_out']['trained'].get('test'))}"]
    for name, m in (report.get("baselines") or {}).items():
        lines.append(f"    {name}: MAE {m['mae']:.2f}, r {m['pearson_r'] if m['pearson_r'] is None else round(m['pearson_r'], 2)}")
    rt = report.get("realtext")
    if rt and rt.get("trained") and rt.get("base"):
        from training.realtext import headline

        t, b = headline(rt["trained"]), headline(rt["base"])
        lines.append(f"  real text (held-out): CounselChat depression AUC cold start {b['counselchat_depression_auc']:.3f}, "
                     f"trained {t['counselchat_depression_auc']:.3f}; SAD Spearman cold start {b['sad_spearman']:.3f}, "
                     f"trained {t['sad_spearman']:.3f}")
    lines.append(f"  installed as the default: {report['installed']}" if report.get("installed") else
                 "  NOT installed: it does not read real text at least as well as the cold-start model (or the checks did not run)")
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    """`phq train` for an item-model base (`--base-model coldstart` or an item-model directory): the same
    arguments as `phq train` (training.train.parser); `--set` takes this module's CONFIG keys."""
    from training.train import _named, parser, parse_value

    args = parser().parse_args(argv)
    cfg = dict(CONFIG, base_model=args.base_model)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in cfg:
            print(f"phq train: unknown setting {key!r} for an item model; known: {', '.join(CONFIG)}", file=sys.stderr)
            return 2
        cfg[key] = parse_value(value)
    try:
        cfg["baseline_models"] = dict(_named(spec) for spec in args.baseline_model)
    except ValueError as exc:
        print(f"phq train: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or f"runs/{cfg['name']}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    try:
        run(args.events, [args.labels, *args.pseudo_labels], run_dir, cfg)
    except (OSError, ValueError) as exc:
        print(f"phq train: {exc}", file=sys.stderr)
        return 1
    return 0


# -----------------------------------------------------------------------------------------------
# the item model as the scheme's student (training.pseudolabel.Student: train, predict, spread)

def train_student(cfg: dict, train_examples, val_examples, run_dir: Path, log=print, test_users=()) -> dict:
    """One round's student: the item heads fitted on `train_examples` (real and pseudo labels, weighted
    by provenance) from the cold-start model, selected on `val_examples`; a model directory in `run_dir`."""
    import torch

    from scoring.engine import ItemScorer
    from training.data import fingerprint

    cfg = {**CONFIG, **{k: v for k, v in cfg.items() if k in CONFIG}}
    torch.manual_seed(cfg["seed"])
    started = time.monotonic()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    base = resolve_base(cfg["base_model"] if is_item_base(cfg["base_model"]) else "coldstart", run_dir)
    model = ItemScorer.load(base).model
    for ex in list(train_examples) + list(val_examples):
        ex.extra.setdefault("items", None)
    train_b, val_b = Batch(model, train_examples, cfg), Batch(model, val_examples, cfg)
    real = Anchor(model, cfg) if cfg["realtext_anchor"] > 0 or cfg["realtext_select"] else None
    base_state = {k: v.detach().clone() for k, v in model.heads.t.items()}
    history = fit(model, train_b, val_b, {**cfg, "quiet": True}, lambda _msg: None, real)
    fp = fingerprint(list(train_examples))
    version = f"{cfg['name']}-{fp.split(':')[-1][:8]}"
    out = write_model(base, run_dir / "model", model, {"model_version": version, "data_fingerprint": fp,
                                                        "base_model": model.meta.model_version})
    _record_training_users(out, {ex.user_id for ex in list(train_examples) + list(val_examples)})
    result = {"model_version": version, "model_path": str(out), "installed_path": None,
              "best_val_mae": history["best_val_mae"], "train_seconds": round(time.monotonic() - started, 1),
              "steps": history["history"][-1]["step"], "best_step": history["best_step"], "history": history["history"]}
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    result.update({"cfg": cfg, "model": model, "train_examples": list(train_examples), "val_batch": val_b,
                   "base_state": base_state, "anchor": real})
    log(f"item student {version}: validation MAE {history['best_val_mae']:.2f} in {result['train_seconds']:.0f}s")
    return result


def predict_student(result: dict, examples) -> list[float]:
    model = result["model"]
    return _totals(model, Batch(model, examples, result["cfg"]))


def spread_student(result: dict, examples, passes: int) -> tuple[list[float], list[float]]:
    """(means, standard deviations) over a small seed ensemble: `passes` sets of heads, each fitted from the
    base model on a bootstrap resample of the round's training examples with a seed of its own (the heads
    have no dropout, so an ensemble is what makes the estimate vary)."""
    import copy
    import random

    import torch

    model, cfg = result["model"], result["cfg"]
    members = result.setdefault("ensemble", [])
    train = result["train_examples"]
    while len(members) < passes:
        seed = cfg["seed"] + 1000 * (len(members) + 1)
        rng = random.Random(seed)
        sample = [train[rng.randrange(len(train))] for _ in train]
        member = copy.copy(model)
        member.heads = copy.copy(model.heads)
        member.heads.t = {k: v.clone() for k, v in result["base_state"].items()}  # from the same start as the student
        torch.manual_seed(seed)
        fit(member, Batch(member, sample, cfg), result["val_batch"], {**cfg, "quiet": True}, lambda _msg: None,
            result["anchor"])
        members.append(member)
    batch = Batch(model, examples, cfg)
    preds = torch.tensor([_totals(m, batch) for m in members[:passes]])
    return preds.mean(0).tolist(), preds.std(0, unbiased=passes > 1).tolist()


def item_student():
    """The item model as `training.pseudolabel.Student`."""
    from training.pseudolabel import Student

    return Student(train=train_student, predict=predict_student, spread=spread_student)
