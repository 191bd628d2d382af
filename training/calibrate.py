"""`python -m training.calibrate [--model DIR] [--users N] [--seed S]`: a model's calibration measured on
held-out synthetic users, written into its directory; with no --model, the cold-start model's, written
to scoring/coldstart_calibration.json (which the cold-start build ships).

The cold-start model learns from no labels, so every labelled `phq synth` user is held out from it.
Synthetic users are not people: the calibration says so in its `source`, and its intervals are what
the model's errors on synthetic text imply, not a clinical error rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_USERS = 400
DEFAULT_SEED = 8101  # a seed of its own: no study or test uses it


def measure(model_dir: Path, users: int, seed: int, progress: bool = True) -> dict:
    """Split-conformal calibration of a model on the labelled users of a fresh `phq synth` run."""
    from scoring import calibration
    from scoring.engine import Scorer
    from training.data import labelled_examples, read_labels, read_transcripts

    with tempfile.TemporaryDirectory(prefix="phq-calibrate-") as tmp:
        events, labels = Path(tmp) / "events.jsonl", Path(tmp) / "labels.csv"
        subprocess.run([sys.executable, "-m", "phq.cli", "synth", "--users", str(users), "--seed", str(seed),
                        "--out-events", str(events), "--out-labels", str(labels)], check=True, stdout=subprocess.DEVNULL)
        turns, _ = read_transcripts(events)
        examples, _ = labelled_examples(turns, [lab for lab in read_labels(labels) if lab.provenance == "gt"])
    scorer = Scorer.load(model_dir)
    outputs = scorer.score([ex.turns for ex in examples])
    cal = calibration.fit([ex.total for ex in examples], [o.score for o in outputs], model_version=scorer.model_version,
                          source=f"{len(examples)} labelled phq synth users (seed {seed}); SYNTHETIC, not clinical")
    return cal


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the cold-start model, shipped calibration)")
    p.add_argument("--users", type=int, default=DEFAULT_USERS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = p.parse_args(argv)
    from scoring.coldstart import CALIBRATION_FILE, build_coldstart
    from scoring.model import META_FILE, read_meta

    if args.model:
        model = Path(args.model)
    else:
        with tempfile.TemporaryDirectory(prefix="phq-coldstart-") as tmp:
            model = build_coldstart(Path(tmp) / "coldstart")
            cal = measure(model, args.users, args.seed)
        CALIBRATION_FILE.write_text(json.dumps(cal, indent=2) + "\n")
        print(f"wrote {CALIBRATION_FILE} for {cal['model_version']}: 90% interval [score{cal['low']:+.2f}, "
              f"score{cal['high']:+.2f}], change bound {cal['change_bound']:.2f} points (n {cal['n']})")
        return 0
    cal = measure(model, args.users, args.seed)
    meta = read_meta(model)
    meta.calibration = cal
    (model / META_FILE).write_text(meta.to_json())
    print(f"calibrated {model}: change bound {cal['change_bound']:.2f} points (n {cal['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
