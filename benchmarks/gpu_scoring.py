"""GPU throughput of the scoring path: random-initialised Qwen3 regressors (0.6B to 32B) in bf16.

Workloads: equal-length batches at 1k, 4k and 8k tokens; a log-normal mix of transcript lengths
(200 to 16k tokens, median about 3k) through the real batcher and transformers backend, beside the
naive baseline (padded batches of 8 in arrival order, with the attention mask padding needs).
Needs only torch, transformers and this repo. Run: python benchmarks/gpu_scoring.py [--models 8b]
(the 32B needs about 70 GB of weights: an H200; it is skipped where it does not fit).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a bare checkout

import torch

from scoring.backends import TransformersBackend
from scoring.batcher import arrival_batches, batch_stats, plan_batches
from scoring.model import ModelMeta
from scoring.render import Rendered

# The Qwen3 family's published shapes (hidden, layers, heads, kv heads, intermediate); head_dim 128.
SHAPES = {
    "0.6b": {"hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 3072},
    "1.7b": {"hidden_size": 2048, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 6144},
    "8b": {"hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 12288},
    "32b": {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 25600},
}
# --dry-run: the same code on the CPU with a toy shape, to check the script where no GPU is lent.
DRY_SHAPE = {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 512}
DEVICE = "cuda"
VOCAB = 151936
HEAD_DIM = 128


@dataclass
class Result:
    model: str
    workload: str
    seconds: float
    useful_tokens: int
    transcripts: int
    padding_fraction: float
    peak_gib: float
    flops: float
    n_batches: int

    def tokens_per_s(self) -> float:
        return self.useful_tokens / self.seconds

    def utilisation(self, peak_flops: float) -> float:
        return self.flops / self.seconds / peak_flops


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def matmul_peak(n: int = 8192, iters: int = 20) -> float:
    """bf16 matmul FLOP/s of one large square matmul: the denominator of utilisation."""
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync()
    flops = 2 * n**3 * iters / (time.perf_counter() - start)
    del a, b
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return flops


def build_model(name: str):
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(
        vocab_size=VOCAB, head_dim=HEAD_DIM, max_position_embeddings=40960, num_labels=1, problem_type="regression",
        pad_token_id=0, tie_word_embeddings=name == "0.6b", attn_implementation="sdpa", dtype=torch.bfloat16,
        **SHAPES.get(name, DRY_SHAPE),
    )
    torch.manual_seed(0)
    with torch.device(DEVICE):
        torch.set_default_dtype(torch.bfloat16)
        try:
            model = Qwen3ForSequenceClassification(config)
        finally:
            torch.set_default_dtype(torch.float32)
    return model.eval()


def param_bytes(name: str) -> int:
    s = SHAPES[name]
    h, layers, inter = s["hidden_size"], s["num_hidden_layers"], s["intermediate_size"]
    q, kv = s["num_attention_heads"] * HEAD_DIM, s["num_key_value_heads"] * HEAD_DIM
    per_layer = h * (q + 2 * kv) + q * h + 3 * h * inter
    return 2 * (layers * per_layer + VOCAB * h)


def non_embedding_params(model) -> int:
    embed = model.model.embed_tokens.weight.numel()
    return sum(p.numel() for p in model.parameters()) - embed


def model_flops(model, lengths: list[int]) -> float:
    """2 x non-embedding params x tokens, plus causal attention (QK^T and AV over half the square)."""
    cfg = model.config
    dense = 2 * non_embedding_params(model) * sum(lengths)
    attention = sum(2 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * n * n for n in lengths)
    return float(dense + attention)


def mix_lengths(n: int, seed: int = 0, median: int = 3000, low: int = 200, high: int = 16000, sigma: float = 0.9) -> list[int]:
    """Log-normal transcript lengths, clipped to [low, high]."""
    rng = random.Random(seed)
    return [min(high, max(low, int(rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def fake_rendered(lengths: list[int], seed: int = 1) -> list[Rendered]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(1, VOCAB, (n,), generator=gen).tolist()
        out.append(Rendered(ids, n, None, 0, 0, 0, False))
    return out


def timed(fn) -> tuple[float, float]:
    sync()
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0
    return time.perf_counter() - start, peak


def equal_length(name, model, backend, seq: int, batch_tokens: int, iters: int) -> Result:
    batch = max(1, batch_tokens // seq)
    rows = [r.input_ids for r in fake_rendered([seq] * batch)]
    backend.forward(rows)  # warm-up: kernels picked, allocator grown
    seconds, peak = timed(lambda: [backend.forward(rows) for _ in range(iters)])
    lengths = [seq] * batch * iters
    return Result(name, f"equal {seq} x{batch}", seconds, sum(lengths), len(lengths), 0.0, peak, model_flops(model, lengths), iters)


def mix_batcher(name, model, backend, rendered) -> Result:
    lengths = [r.n_tokens for r in rendered]
    backend.predict(rendered[:4])  # warm-up
    seconds, peak = timed(lambda: backend.predict(rendered))
    stats = backend.last_stats
    return Result(name, "mix, batcher", seconds, sum(lengths), len(lengths), stats.padding_fraction, peak, model_flops(model, lengths), stats.n_batches)


def mix_batches(name, model, backend, rendered, batches, label) -> Result:
    lengths = [r.n_tokens for r in rendered]
    backend.forward([rendered[i].input_ids for i in batches[0]])  # warm-up
    seconds, peak = timed(lambda: [backend.forward([rendered[i].input_ids for i in b]) for b in batches])
    stats = batch_stats(lengths, batches)
    return Result(name, label, seconds, sum(lengths), len(lengths), stats.padding_fraction, peak, model_flops(model, lengths), stats.n_batches)


def run_model(name: str, args, peak_flops: float, deadline: float, results: list[Result]) -> None:
    """Every workload on one model, appended to `results` as each finishes (an OOM keeps the earlier ones)."""
    free = torch.cuda.mem_get_info()[0] if DEVICE == "cuda" else float("inf")
    if name in SHAPES and param_bytes(name) * 1.15 > free:
        log(f"skip {name}: needs about {param_bytes(name) / 2**30:.0f} GiB of weights, {free / 2**30:.0f} GiB free")
        return
    t0 = time.perf_counter()
    model = build_model(name)
    log(f"{name}: built in {time.perf_counter() - t0:.1f}s, {non_embedding_params(model) / 1e9:.2f}B non-embedding params")
    meta = ModelMeta(model_version=f"bench-{name}", backbone="decoder", token_budget=16384)
    fast = TransformersBackend.from_model(model, meta, device=DEVICE, batch_tokens=args.batch_tokens, max_padding=args.max_padding, solo_min_tokens=args.solo_min_tokens or None)
    masked = TransformersBackend.from_model(model, meta, device=DEVICE, batch_tokens=args.batch_tokens, mask_free=False)
    iters = 2 if name == "32b" else 3
    plan = [(f"equal {seq}", lambda seq=seq: equal_length(name, model, fast, seq, args.batch_tokens, iters)) for seq in args.seq]
    n_mix = args.mix if name != "32b" else min(args.mix, args.mix_32b)
    rendered = fake_rendered(mix_lengths(n_mix, seed=args.seed, **getattr(args, "mix_lengths", {})))
    plan += [
        ("mix, batcher", lambda: mix_batcher(name, model, fast, rendered)),
        ("mix, naive: arrival order x8, masked", lambda: mix_batches(name, model, masked, rendered, arrival_batches(n_mix, 8), "mix, naive x8 masked")),
    ]
    if name in args.sorted_masked_models.split(","):
        sorted_plan = plan_batches([r.n_tokens for r in rendered], args.batch_tokens, max_padding=None)
        plan.append(("mix, sorted, masked", lambda: mix_batches(name, model, masked, rendered, sorted_plan, "mix, sorted masked")))
    if args.compile:
        plan.append(("compiled", lambda: compiled_rows(name, model, fast, rendered, args)))
    for label, fn in plan:
        if time.perf_counter() > deadline and not label.startswith("equal"):
            log(f"skip {name} {label}: past the time limit (--time-limit)")
            continue
        try:
            got = fn()
        except torch.cuda.OutOfMemoryError as exc:  # report what ran rather than lose it
            log(f"skip {name} {label}: out of GPU memory ({str(exc).splitlines()[0]})")
            continue
        for r in got if isinstance(got, list) else [got]:
            results.append(r)
            log(_line(r, peak_flops))
    # the model goes with this frame; main() empties the CUDA cache


def compiled_rows(name, model, fast, rendered, args) -> list[Result]:
    """The batcher's mix and equal 4k again, with the decoder layers compiled (torch.compile)."""
    t0 = time.perf_counter()
    fast.compile()
    fast.forward([rendered[0].input_ids])  # the compile happens here
    log(f"{name}: compiled in {time.perf_counter() - t0:.0f}s")
    rows = [equal_length(name, model, fast, args.compile_seq, args.batch_tokens, 2 if name == "32b" else 3), mix_batcher(name, model, fast, rendered)]
    for r in rows:
        r.workload += ", compiled"
    return rows


def _line(r: Result, peak: float) -> str:
    return (f"{r.model:>5} {r.workload:<22} {r.tokens_per_s():>10,.0f} tok/s {r.transcripts / r.seconds:>8.2f} tr/s "
            f"pad {r.padding_fraction:5.1%} peak {r.peak_gib:6.1f} GiB util {r.utilisation(peak):.3f} batches {r.n_batches}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="0.6b,1.7b,8b,32b", help="comma-separated of " + ",".join(SHAPES))
    parser.add_argument("--batch-tokens", type=int, default=32768, help="tokens per forward pass (padding included)")
    parser.add_argument("--max-padding", type=float, default=0.1, help="the batcher's per-request padding bound")
    parser.add_argument("--solo-min-tokens", type=int, default=8192, help="transcripts this long run alone (0: never)")
    parser.add_argument("--mix", type=int, default=96, help="transcripts in the mix")
    parser.add_argument("--mix-32b", type=int, default=32, help="transcripts in the 32B's mix (time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sorted-masked-models", default="8b,dry", help="models also timed on sorted batches with the mask (sorting alone)")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds after which remaining models and mixes are skipped")
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="directory for results.json (default $OUT)")
    parser.add_argument("--compile", action="store_true", help="also time equal 4k and the mix with torch.compile'd layers")
    parser.add_argument("--dry-run", action="store_true", help="check the script on the CPU with a toy model")
    args = parser.parse_args()
    args.seq, args.compile_seq = (1024, 4096, 8192), 4096
    if args.dry_run:
        global DEVICE
        DEVICE = "cpu"
        args.models, args.seq, args.compile_seq, args.batch_tokens, args.mix, args.mix_32b = "dry", (128, 256), 256, 1024, 12, 12
        args.mix_lengths = {"median": 150, "low": 20, "high": 600}
    elif not torch.cuda.is_available():
        print("gpu_scoring: no CUDA device; run this on a GPU machine (or --dry-run to check it on the CPU)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    import transformers

    env = {"gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)", "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda, "flash_attn": _has("flash_attn")}
    log(json.dumps(env))
    peak = matmul_peak() if DEVICE == "cuda" else matmul_peak(512, 3)
    log(f"bf16 matmul peak: {peak / 1e12:.0f} TFLOP/s")
    lengths = mix_lengths(args.mix, seed=args.seed, **getattr(args, "mix_lengths", {}))
    log(f"mix: {len(lengths)} transcripts, median {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)}, {sum(lengths):,} tokens")
    results: list[Result] = []
    for name in [m.strip().lower() for m in args.models.split(",") if m.strip()]:
        if name not in SHAPES and not args.dry_run:
            print(f"gpu_scoring: unknown model {name!r}; pick from {', '.join(SHAPES)}", file=sys.stderr)
            return 2
        if time.perf_counter() > start + args.time_limit:
            log(f"skip {name}: past the time limit (--time-limit)")
            continue
        try:
            run_model(name, args, peak, start + args.time_limit, results)
        except torch.cuda.OutOfMemoryError as exc:  # building it did not fit
            log(f"skip {name}: out of GPU memory ({str(exc).splitlines()[0]})")
        gc.collect()
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        save(args.out, env, peak, results)
    print(_table(results, peak, env))
    print(_goals(results, peak))
    log(f"total {time.perf_counter() - start:.0f}s")
    return 0


def save(out: str, env: dict, peak: float, results: list[Result]) -> None:
    """results.json after each model, so a run cut short keeps what it measured."""
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) | {"utilisation": r.utilisation(peak), "tokens_per_s": r.tokens_per_s()} for r in results]
    (Path(out) / "results.json").write_text(json.dumps({"env": env, "peak_flops": peak, "results": rows}, indent=2))


def _goals(results: list[Result], peak: float) -> str:
    """The issue's goals per model: mix vs equal 4k (>= 0.9), mix vs naive (>= 3x), 4k utilisation."""
    lines = ["", "| model | equal 4k util | mix util | mix / equal 4k | mix / naive |", "| --- | ---: | ---: | ---: | ---: |"]
    for model in dict.fromkeys(r.model for r in results):
        eq, mix, naive = (_best(results, model, prefix, peak) for prefix in ("equal 4096", "mix, batcher", "mix, naive"))
        lines.append(f"| {model} | {_fmt(eq, '.3f')} | {_fmt(mix, '.3f')} | {_fmt(mix / eq if mix and eq else None, '.2f')} "
                     f"| {_fmt(mix / naive if mix and naive else None, '.2f')} |")
    return "\n".join(lines)


def _best(results: list[Result], model: str, prefix: str, peak: float) -> float | None:
    found = [r.utilisation(peak) for r in results if r.model == model and r.workload.startswith(prefix)]
    return max(found) if found else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _table(results: list[Result], peak: float, env: dict) -> str:
    lines = [f"{env['gpu']}, torch {env['torch']}, transformers {env['transformers']}, bf16 matmul peak {peak / 1e12:.0f} TFLOP/s", "",
             "| model | workload | useful tok/s | transcripts/s | padding | peak GiB | utilisation | batches |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.model} | {r.workload} | {r.tokens_per_s():,.0f} | {r.transcripts / r.seconds:.2f} | {r.padding_fraction:.1%} "
                     f"| {r.peak_gib:.1f} | {r.utilisation(peak):.3f} | {r.n_batches} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
