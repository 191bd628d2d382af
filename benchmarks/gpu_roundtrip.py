"""GPU round trip of the seed's model class: fine-tune a random-initialised Qwen3-1.7B-shape regressor with
LoRA (r=16, bf16, gradient checkpointing) on `phq synth` v2 windows through training/train.py, save it (LoRA
folded in, bf16), load it, and score the same held-out windows through the transformers backend and through
vLLM (if importable; otherwise it says so), each beside the training-time forward. One short script with a
time limit; figures to roundtrip.json.

    python benchmarks/gpu_roundtrip.py --out bench-out                            # on a GPU: about 5 minutes
    python benchmarks/gpu_roundtrip.py --tiny --device cpu --out /tmp/roundtrip   # the same steps, tiny shape, CPU

Random weights: the loss and MAE say nothing about PHQ-9 accuracy, only that every step of the path runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Qwen3-1.7B's architecture (hidden 2048, 28 layers, 16 query / 8 key-value heads of 128), random weights.
QWEN3_1_7B = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                  rope_theta=1_000_000.0, tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=64, vocab_size=4096, max_position_embeddings=4096, tie_word_embeddings=True)  # vLLM CPU: head_dim 64

RUN = dict(users=240, steps=60, eval_every=20, batch_size=8, grad_accum=2, token_budget=2048, lr=2e-4, lora_r=16,
           lora_alpha=32, score_windows=32, seed=0, max_minutes=5.0)


def trainable_params(shape: dict, lora_r: int) -> tuple[int, int]:
    """(all parameters, trainable ones) of a Qwen3 regressor of `shape` with LoRA on every linear layer,
    counted on the meta device (nothing allocated)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(**shape, num_labels=1, pad_token_id=0)
    with torch.device("meta"):
        model = Qwen3ForSequenceClassification(config)
    total = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r,
                                             target_modules="all-linear"))
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_base(out: Path, shape: dict, device: str, bf16: bool) -> Path:
    """A random-initialised Qwen3 regressor of `shape` with the synthetic-corpus tokenizer, saved as a base model."""
    import torch
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    from training.tiny import build_tokenizer

    tok = build_tokenizer("decoder", vocab_size=min(shape["vocab_size"], 2000))
    torch.manual_seed(0)
    config = Qwen3Config(**shape, num_labels=1, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    with torch.device(device):
        model = Qwen3ForSequenceClassification(config).to(torch.bfloat16 if bf16 else torch.float32)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    del model
    return out


def vllm_scores(model_dir: Path, rendered) -> tuple[list[float] | None, str]:
    """(scores, note): vLLM's PHQ-9 points for the rendered windows, or None and why not."""
    try:
        from scoring.backends import VllmBackend
    except ImportError as exc:
        return None, f"not importable: {exc}"
    try:
        backend = VllmBackend(model_dir)
    except RuntimeError as exc:  # VllmBackend says when vLLM itself is missing
        return None, str(exc)
    try:
        t = time.monotonic()
        out = backend.predict(rendered)
        return out, f"ok ({time.monotonic() - t:.1f}s for {len(rendered)} windows)"
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--tiny", action="store_true", help="a tiny shape instead of Qwen3-1.7B's (a check anywhere)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-vllm", action="store_true", help="skip the vLLM step")
    for key, value in RUN.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)

    import torch

    from scoring.engine import Scorer
    from training import synth
    from training.data import labelled_examples, read_labels, read_transcripts, splits_from_labels
    from training.train import checkpoint_bytes, predict, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or pass --tiny --device cpu for the CPU check", file=sys.stderr)
        return 2
    on_gpu = args.device == "cuda"
    shape = TINY if args.tiny else QWEN3_1_7B
    result: dict = {"device": torch.cuda.get_device_name(0) if on_gpu else platform.processor() or "cpu",
                    "torch": torch.__version__, "shape": "tiny" if args.tiny else "qwen3-1.7b (random init)",
                    "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": vars(args)}
    t0 = time.monotonic()

    def record(**kv):
        result.update(kv)
        (out / "roundtrip.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    # 1. data: phq synth v2 windows, the generator's own splits (test users speak held-out wordings)
    data = synth.synthesize(args.users, args.seed, start=datetime(2026, 1, 1, tzinfo=timezone.utc))
    synth.write_events(data.events, out / "events.jsonl")
    synth.write_labels(data.labels, out / "labels.csv")
    turns, _ = read_transcripts(out / "events.jsonl")
    labels = read_labels(out / "labels.csv")
    gt, _ = labelled_examples(turns, labels)
    split = splits_from_labels(labels)
    part = {k: [e for e in gt if e.user_id in users] for k, users in split.items()}
    test = part["test"][: args.score_windows]

    # 2. the base model and the fine-tune: LoRA on every linear layer, bf16 on GPU, a fixed number of steps
    total, trainable = trainable_params(shape, args.lora_r)
    record(params=total, trainable_params=trainable, checkpoint_bytes_estimate=checkpoint_bytes(trainable, on_gpu))
    base = build_base(out / "base", shape, args.device, on_gpu)
    record(build_s=round(time.monotonic() - t0, 1))
    seen = {"checkpoint_bytes": 0}

    def log(msg: str) -> None:
        print(msg, flush=True)
        ckpt = out / "run" / "checkpoint.pt"
        if ckpt.exists():
            seen["checkpoint_bytes"] = max(seen["checkpoint_bytes"], ckpt.stat().st_size)

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    cfg = dict(base_model=str(base), lora=True, lora_r=args.lora_r, lora_alpha=args.lora_alpha, device=args.device,
               token_budget=args.token_budget, max_steps=args.steps, eval_every=args.eval_every, batch_size=args.batch_size,
               grad_accum=args.grad_accum, lr=args.lr, head_lr=args.lr, patience=10**6, max_minutes=args.max_minutes,
               install=False, quiet=True, name="roundtrip")
    res = train(cfg, part["train"], part["val"], out / "run", log=log, test_users=[e.user_id for e in test])
    model_dir = Path(res["model_path"])
    record(train_s=res["train_seconds"], steps=res["steps"], stop_reason=res["stop_reason"],
           history=res["history"], checkpoint_bytes_seen=seen["checkpoint_bytes"],
           peak_train_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
           model_dir_bytes=sum(f.stat().st_size for f in model_dir.iterdir()))

    # 3. the training-time forward (LoRA unmerged) on the test windows, then free the GPU for serving
    t = time.monotonic()
    trained = predict(res["model"], res["tokenizer"], res["meta"], test, batch_size=4, clip=False)
    record(training_forward_s=round(time.monotonic() - t, 1))
    del res
    if on_gpu:
        torch.cuda.empty_cache()

    # 4. load the saved directory and score through the transformers backend
    t = time.monotonic()
    scorer = Scorer.load(model_dir, "transformers", device=args.device)
    rendered = scorer.render([e.turns for e in test])
    served = [s.raw for s in scorer.score_rendered(rendered)]
    scorer.close()
    del scorer
    if on_gpu:
        torch.cuda.empty_cache()
    record(transformers_s=round(time.monotonic() - t, 1),
           transformers_max_abs_diff=max(abs(a - b) for a, b in zip(trained, served)),
           mean_tokens_per_window=round(sum(r.n_tokens for r in rendered) / len(rendered), 1))

    # 5. vLLM, if this machine has it
    if args.no_vllm:
        record(vllm="skipped (--no-vllm)")
    else:
        try:
            scores, note = vllm_scores(model_dir, rendered)
        except Exception as exc:  # a benchmark reports what failed rather than dying without figures
            scores, note = None, f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        record(vllm=note, vllm_max_abs_diff=max(abs(a - b) for a, b in zip(trained, scores)) if scores else None)
    record(total_s=round(time.monotonic() - t0, 1), n_scored=len(test))
    print(json.dumps({k: v for k, v in result.items() if k not in ("history", "settings")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
