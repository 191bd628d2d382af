"""GPU benchmark: a short LoRA regression fine-tune of a random-initialised Qwen3-architecture model
(Qwen3-0.6B's shape, about 0.6B parameters) on rendered synthetic windows, recording tokens/s and
peak GPU memory. Uses training/'s own pieces (backbone loading, LoRA, serving's renderer, loss).

    python benchmarks/gpu_lora.py --out bench-out            # on a GPU: ~300 steps, a few minutes
    python benchmarks/gpu_lora.py --tiny --steps 3 --device cpu --out /tmp/smoke   # smoke test anywhere

The model is random-initialised: its loss says nothing about PHQ-9 accuracy, only that the loop runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Qwen3-0.6B's architecture (hidden 1024, 28 layers, 16 query / 8 key-value heads of 128), random weights.
QWEN3_06B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                 rope_theta=1_000_000.0, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, vocab_size=4096, max_position_embeddings=4096, tie_word_embeddings=True)

BENCH = dict(steps=300, batch_size=8, grad_accum=2, token_budget=2048, lr=2e-4, lora_r=16, lora_alpha=32,
             users=400, seed=0, max_minutes=8.0)


def build_base(out: Path, arch: dict) -> Path:
    """Save a random-initialised Qwen3 regressor with the synthetic-corpus tokenizer as a base model directory."""
    import torch
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    from training.tiny import build_tokenizer

    tok = build_tokenizer("decoder", vocab_size=min(arch["vocab_size"], 2000))
    torch.manual_seed(0)
    config = Qwen3Config(**arch, num_labels=1, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = Qwen3ForSequenceClassification(config)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--tiny", action="store_true", help="a tiny model instead of the 0.6B shape (smoke test)")
    p.add_argument("--device", default="cuda")
    for key, value in BENCH.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)

    import torch

    from training import synth
    from training.data import labelled_examples, read_labels, read_transcripts
    from training.train import CONFIG, batches, encode, load_backbone, make_meta, predict, weighted_loss

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or pass --device cpu --tiny for a smoke test", file=sys.stderr)
        return 2
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    # 1. data: synthetic windows rendered by serving's renderer
    events, labels = synth.generate(args.users, args.seed, start=datetime(2026, 1, 1, tzinfo=timezone.utc), label_fraction=1.0)
    synth.write_events(events, out / "events.jsonl")
    synth.write_labels(labels, out / "labels.csv")
    turns, _ = read_transcripts(out / "events.jsonl")
    examples, _ = labelled_examples(turns, read_labels(out / "labels.csv"))
    random.Random(args.seed).shuffle(examples)
    n_val = max(1, len(examples) // 10)
    val, train_ex = examples[:n_val], examples[n_val:]

    # 2. model: random-init Qwen3, LoRA on every linear layer, bf16 autocast and gradient checkpointing on GPU
    base = build_base(out / "base", TINY if args.tiny else QWEN3_06B)
    cfg = {**CONFIG, "base_model": str(base), "lora": True, "lora_r": args.lora_r, "lora_alpha": args.lora_alpha,
           "token_budget": args.token_budget, "grad_checkpointing": device == "cuda"}
    model, tok, backbone, _ = load_backbone(cfg, device, bf16=device == "cuda")  # bf16 weights, fp32 LoRA and head
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    meta = make_meta(cfg, backbone, tok, [e.total for e in train_ex], "bench", model.config)
    ids = encode(train_ex, tok, meta)
    y = torch.tensor([meta.to_raw(e.total) for e in train_ex])
    w = torch.ones(len(train_ex))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    loss_fn = torch.nn.HuberLoss(reduction="none")
    use_bf16 = device == "cuda"

    # 3. the loop: `steps` optimiser steps of `batch_size` x `grad_accum` windows, timed after a 5-step warmup
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    order, tokens, losses, step, micro = [], 0, [], 0, 0
    t_start, t_warm, tokens_warm = time.monotonic(), None, 0
    model.train()
    while step < args.steps:
        if not order:
            order = list(range(len(ids)))
            random.shuffle(order)
        chunk, order = order[: args.batch_size], order[args.batch_size:]
        for idx, x, mask in batches(ids, chunk, args.batch_size, tok.pad_token_id, device):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
                pred = model(input_ids=x, attention_mask=mask).logits.float().view(-1)
            loss = weighted_loss(loss_fn, pred, y[idx].to(device), w[idx].to(device))
            (loss / args.grad_accum).backward()
            tokens += int(mask.sum())
            micro += 1
        if micro % args.grad_accum == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss.item())
            if step == 5:
                if device == "cuda":
                    torch.cuda.synchronize()
                t_warm, tokens_warm = time.monotonic(), tokens
            if step % 25 == 0:
                print(f"step {step}/{args.steps} loss {sum(losses[-25:]) / len(losses[-25:]):.4f}", flush=True)
            if time.monotonic() - t_start > args.max_minutes * 60:
                print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached", flush=True)
                break
    if device == "cuda":
        torch.cuda.synchronize()
    t_end = time.monotonic()
    timed_s = t_end - (t_warm or t_start)
    timed_tokens = tokens - tokens_warm

    # 4. a validation pass (meaningless for accuracy with random weights; checks inference after LoRA training)
    val_pred = predict(model, tok, meta, val, batch_size=args.batch_size)
    val_mae = sum(abs(p - e.total) for p, e in zip(val_pred, val)) / len(val)
    result = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "arch": "tiny" if args.tiny else "qwen3-0.6b-shape (random init)",
        "params": n_params, "trainable_params": n_trainable, "steps": step,
        "windows_per_step": args.batch_size * args.grad_accum, "token_budget": args.token_budget,
        "mean_tokens_per_window": round(sum(len(i) for i in ids) / len(ids), 1),
        "tokens_per_s": round(timed_tokens / timed_s, 1) if timed_s > 0 else None,
        "seconds": round(t_end - t_start, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "bf16": use_bf16, "gradient_checkpointing": device == "cuda",
        "loss_first_25": sum(losses[:25]) / max(1, len(losses[:25])),
        "loss_last_25": sum(losses[-25:]) / max(1, len(losses[-25:])),
        "val_mae_random_init": round(val_mae, 3),
    }
    (out / "gpu_lora.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
