"""Change events of CONTRACT section 3: what changed between a score and its predecessor.

Pure rules, thresholds passed in (from PHQ_RELIABLE_CHANGE and PHQ_CLINICAL_THRESHOLD, and v2's noise
bound from the model's calibration); the scoring worker finds the predecessor (same user and model
version, previous by `scored_at`) and stores them.
"""

from __future__ import annotations

from dataclasses import dataclass

from phq.models import severity

RELIABLE_CHANGE = "reliable_change"
THRESHOLD_CROSSING = "threshold_crossing"
SEVERITY_BAND_CHANGE = "severity_band_change"
KINDS = (RELIABLE_CHANGE, THRESHOLD_CROSSING, SEVERITY_BAND_CHANGE)


@dataclass(frozen=True)
class Change:
    kind: str
    direction: str  # worsening | improvement
    previous_score: float
    current_score: float
    delta: float
    previous_severity: str
    current_severity: str
    noise_bound: float | None = None  # v2: the calibrated 95% bound |delta| reached (None: v1 rules)


def detect_changes(
    previous: float, current: float, *, reliable_change: float = 5, clinical_threshold: float = 10,
    noise_bound: float | None = None,
) -> list[Change]:
    """Every change kind that holds between two consecutive scores (higher PHQ-9 is worse).

    v2: with a noise bound (the model's calibrated 95% bound for a difference of two of its scores),
    a change is an event only when |delta| also reaches it; a band change or threshold crossing within
    the model's noise is no event (it still shows in the trajectory). Without one, the v1 rules."""
    delta = current - previous
    prev_band, cur_band = severity(previous), severity(current)
    if noise_bound is not None and abs(delta) < noise_bound:
        return []
    kinds = []
    if abs(delta) >= reliable_change:
        kinds.append(RELIABLE_CHANGE)
    if (previous < clinical_threshold) != (current < clinical_threshold):
        kinds.append(THRESHOLD_CROSSING)
    if prev_band != cur_band:
        kinds.append(SEVERITY_BAND_CHANGE)
    direction = "worsening" if delta > 0 else "improvement"
    return [Change(k, direction, previous, current, delta, prev_band, cur_band, noise_bound) for k in kinds]
