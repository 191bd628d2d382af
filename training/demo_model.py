"""The model `phq demo` runs on: the newest trained model directory under PHQ_MODEL_DIR, or, when
there is none, all-MiniLM-L6-v2 fine-tuned here on synthetic data (a few minutes on two cores).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

# The demo's training run, as plain data: small enough for ~2-3 minutes on a 2-core CPU.
DEMO = dict(
    users=160,
    seed=20260101,
    label_fraction=1.0,  # the demo trains on every synthetic user; the CPU study keeps the study's partial labels
    start=datetime(2026, 1, 1, tzinfo=timezone.utc),  # fixed, so the demo model is the same everywhere
    train=dict(base_model="minilm", epochs=3, batch_size=16, token_budget=256, lr=2e-4, head_lr=2e-3,
               freeze=["embeddings", "layer.0.", "layer.1.", "layer.2."],  # the top half learns: half the CPU time
               max_minutes=3.5, val_frac=0.1, test_frac=0.0, name="demo-minilm"),
)


def newest_trained(model_dir: str | Path) -> Path | None:
    """The newest model directory under `model_dir` that was trained (not scoring's untrained stand-in)."""
    from scoring.model import META_FILE, read_meta

    root = Path(model_dir)
    if not root.is_dir():
        return None
    found = []
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file():
            try:
                if not read_meta(p).model_version.startswith("untrained-"):
                    found.append(p)
            except ValueError:
                continue
    return max(found, key=lambda p: ((p / META_FILE).stat().st_mtime_ns, p.name)) if found else None


def ensure_model(model_dir: str) -> Path:
    """The newest trained model directory under `model_dir`, training the demo model there first if none."""
    found = newest_trained(model_dir)
    if found is not None:
        return found
    from training import synth
    from training.data import labelled_examples, read_labels, read_transcripts, split_users
    from training.train import train

    say = lambda msg: print(f"phq demo: {msg}", file=sys.stderr, flush=True)  # stdout stays the caller's
    say(f"no trained model under {model_dir}: fine-tuning all-MiniLM-L6-v2 on synthetic data (2-4 minutes)")
    with tempfile.TemporaryDirectory(prefix="phq-demo-train-") as tmp:
        events, labels = synth.generate(DEMO["users"], DEMO["seed"], start=DEMO["start"],
                                        label_fraction=DEMO["label_fraction"])
        synth.write_events(events, Path(tmp) / "events.jsonl")
        synth.write_labels(labels, Path(tmp) / "labels.csv")
        turns, _ = read_transcripts(Path(tmp) / "events.jsonl")
        examples, _ = labelled_examples(turns, read_labels(Path(tmp) / "labels.csv"))
        cfg = {**DEMO["train"], "model_dir": str(model_dir)}
        split = split_users([e.user_id for e in examples], 0, cfg["val_frac"], cfg["test_frac"])
        result = train(cfg, [e for e in examples if e.user_id in split["train"]],
                       [e for e in examples if e.user_id in split["val"]], Path(tmp) / "run", log=say)
    say(f"trained {result['model_version']} in {result['train_seconds']:.0f}s "
        f"(validation MAE {result['best_val_mae']:.2f} on synthetic users)")
    return Path(result["installed_path"])
