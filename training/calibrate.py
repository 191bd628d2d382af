"""`python -m training.calibrate [--model DIR] [--users N] [--seed S]`: a model's calibration measured on
held-out synthetic users, written into its directory; with no --model, the cold-start model's, written
to scoring/coldstart_calibration.json (which the cold-start build ships).

The cold-start model learns from no labels, so every `phq synth` user is held out from it; scores are
compared with the latent truth at their trigger times (the truth file is for measuring, never training).
Synthetic users are not people: the calibration says so in its `source`, and its intervals are what
the model's errors on synthetic text imply, not a clinical error rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DEFAULT_USERS = 150
DEFAULT_SEED = 8101  # a seed of its own: no study or test uses it


def measure(model_dir: Path, users: int, seed: int, days: int = 56) -> dict:
    """Split-conformal calibration of a model on fresh `phq synth` users: every ended session scored as
    the pipeline would, against the user's latent PHQ-9 that day (the truth file's, never trained on);
    the change bound from the errors of changes between consecutive scores of one user."""
    from scoring import calibration
    from scoring.engine import Scorer
    from training import trajectories

    scorer = Scorer.load(model_dir)
    points, _ = trajectories.synth_points(scorer, users, seed, days)
    bound = trajectories.change_bound(points)
    return calibration.fit(
        [p.truth for p in points], [p.score for p in points], model_version=scorer.model_version,
        source=f"{len(points)} scores of {users} phq synth users (seed {seed}) against their latent truth; SYNTHETIC, "
               "not clinical",
        change_bound=bound["change_bound"],
        change_bound_source=f"95% of |change error| over {bound['n_pairs']} consecutive score pairs of one user "
                            f"(1.96 x sqrt(2) x se would be {bound['approximation_1_96_sqrt2_se']:.2f})")


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
