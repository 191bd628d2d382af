"""Speed of `phq score` with the cold-start item model, beside the transformers backend on the same users.

    python benchmarks/coldstart_scoring.py [--users 1000] [--seed 11]

One run: `phq synth` users (synthetic), each user's window ending at their last event (as `phq score`
reads it), scored (1) by the cold-start item model (clauses of user turns, batched by tokens through
all-MiniLM-L6-v2) and (2) by the transformers backend running a MiniLM regressor on the rendered
windows (256 tokens, as the previous demo model did). Prints seconds, users/s, sentences and tokens
read, peak RSS, and the ratio of the two; the goal is 1,000 users in under 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _synth(users: int, seed: int, out: Path) -> Path:
    events = out / "events.jsonl"
    subprocess.run([sys.executable, "-m", "phq.cli", "synth", "--users", str(users), "--seed", str(seed),
                    "--out-events", str(events), "--out-labels", str(out / "labels.csv")], check=True,
                   stdout=subprocess.DEVNULL)
    return events


def _histories(events: Path):
    from phq.settings import Settings
    from scoring.offline import read_histories, windows_to_score

    settings = Settings()
    users, _bad = read_histories(events, settings)
    return users, windows_to_score(users, settings.window_days), settings


def _timed(scorer, users, settings) -> tuple[float, list]:
    from scoring.offline import score_users

    started = time.perf_counter()
    results = score_users(scorer, users, settings.window_days, progress=False)
    return time.perf_counter() - started, results


def _distinct_rate(item_scorer, clause_tokens: int) -> dict:
    """Tokens/s of the encoder on real texts that are all distinct (nothing repeats, no cache): what real
    people's words cost; and what these users' clause tokens would take at that rate if none repeated."""
    from training.realtext import default_data_dir, load_counselchat, load_sad

    data = default_data_dir()
    if not (data / "sad" / "sad_v1.csv").is_file():
        return {}
    texts = sorted({t.text for t in load_sad(data, False) + load_sad(data, True)})
    texts += sorted({t.text for t in load_counselchat(data, False)})
    encoder = item_scorer.model.encoder
    encoder.cache.clear()
    from scoring.itemmodel import _token_ids

    rows = [r for r in _token_ids(encoder.tokenizer, texts)]
    started = time.perf_counter()
    encoder.encode_ids(rows)
    seconds = time.perf_counter() - started
    tokens = sum(len(r) for r in rows)
    return {"texts": len(rows), "tokens": tokens, "seconds": round(seconds, 1), "texts_per_s": round(len(rows) / seconds, 1),
            "tokens_per_s": round(tokens / seconds), "encoder_dtype": str(next(encoder.model.parameters()).dtype),
            "projected_s_for_these_users_if_no_clause_repeated": round(clause_tokens / (tokens / seconds), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from scoring.coldstart import build_coldstart
    from scoring.engine import Scorer, coldstart_dir
    from scoring.model import bundled_minilm, init_regressor

    with tempfile.TemporaryDirectory(prefix="phq-bench-") as tmp:
        tmp = Path(tmp)
        events = _synth(args.users, args.seed, tmp)
        users, (ids, windows), settings = _histories(events)
        n_turns = sum(len(w) for w in windows)
        n_user_turns = sum(1 for w in windows for t in w if t.role == "user")

        item_scorer = Scorer.load(build_coldstart(coldstart_dir(str(tmp / "models"))))
        item_s, item_results = _timed(item_scorer, users, settings)
        rendered = item_scorer.render(windows)
        n_clauses = sum(len(r.clauses) for r in rendered)
        unique = len({tuple(ids) for r in rendered for ids in r.clause_ids})
        clause_tokens = sum(o.output.n_tokens for o in item_results)
        figures = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads",
            "users": len(ids), "turns": n_turns, "user_turns": n_user_turns,
            "coldstart": {"model_version": item_scorer.model_version, "seconds": round(item_s, 1),
                          "users_per_s": round(len(ids) / item_s, 1), "clause_tokens": clause_tokens,
                          "clauses": n_clauses, "unique_clauses": unique,
                          "note": "identical clauses are encoded once (synthetic users repeat phrases, so this "
                                  "flatters it against real text; unique_clauses is what was encoded)"},
        }
        if not args.skip_baseline:
            regressor = init_regressor(bundled_minilm(), tmp / "regressor", model_version="bench-minilm-regressor",
                                       token_budget=256)
            base_scorer = Scorer.load(regressor, "transformers")
            base_s, base_results = _timed(base_scorer, users, settings)
            figures["transformers_regressor_256"] = {
                "seconds": round(base_s, 1), "users_per_s": round(len(ids) / base_s, 1),
                "tokens": sum(o.output.n_tokens for o in base_results)}
            figures["coldstart_time_over_regressor_time"] = round(item_s / base_s, 2)
        figures["encoder_on_distinct_real_text"] = _distinct_rate(item_scorer, clause_tokens)
        figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(figures, indent=2))
    print(f"cold-start item model: {figures['users']} users in {figures['coldstart']['seconds']} s "
          f"(goal: 1,000 users under 120 s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
