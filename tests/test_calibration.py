"""Calibrated uncertainty (scoring/calibration.py): split-conformal intervals that cover 90% of held-out
truths, asymmetric when the model reads low, and the noise bound of a change between two scores."""

from __future__ import annotations

import random

import pytest

from phq.changes import detect_changes
from scoring import calibration


def _pairs(n, bias, sd, seed=0):
    rng = random.Random(seed)
    truth = [rng.uniform(0, 27) for _ in range(n)]
    return truth, [min(27, max(0, t - bias + rng.gauss(0, sd))) for t in truth]


def test_intervals_cover_ninety_percent_of_new_users():
    cal = calibration.fit(*_pairs(400, 0, 3, seed=1), source="test")
    truth, pred = _pairs(2000, 0, 3, seed=2)
    inside = sum(lo <= t <= hi for t, p in zip(truth, pred) for lo, hi in [calibration.interval(cal, p)])
    assert 0.86 <= inside / len(truth) <= 0.95


def test_a_model_that_reads_low_gets_an_interval_reaching_higher():
    cal = calibration.fit(*_pairs(400, 5, 2), source="test")
    lo, hi = calibration.interval(cal, 10.0)
    assert hi - 10 > 10 - lo
    assert cal["change_bound"] == pytest.approx(1.96 * 2 ** 0.5 * cal["se"])
    assert cal["se"] < 3  # the bias is not noise: a change between two scores cancels it


def test_intervals_stay_within_the_scale():
    cal = calibration.fit(*_pairs(200, 0, 4), source="test")
    for score in (0.0, 1.0, 26.5, 27.0):
        lo, hi = calibration.interval(cal, score)
        assert 0 <= lo <= score <= hi <= 27


def test_no_calibration_means_no_interval_and_the_v1_rules():
    assert calibration.interval(None, 12.0) == (None, None)
    assert calibration.change_bound(None) is None
    assert {c.kind for c in detect_changes(4.0, 6.0)} == {"severity_band_change"}


def test_changes_within_the_models_noise_are_no_events():
    assert detect_changes(4.0, 6.0, noise_bound=4.2) == []  # a band change within noise
    assert detect_changes(12.0, 9.0, noise_bound=4.2) == []  # a threshold crossing within noise
    events = detect_changes(4.0, 11.0, noise_bound=4.2)
    assert {c.kind for c in events} == {"reliable_change", "threshold_crossing", "severity_band_change"}
    assert all(c.noise_bound == 4.2 and c.direction == "worsening" for c in events)


def test_too_few_held_out_users_is_refused():
    with pytest.raises(ValueError):
        calibration.fit([1, 2, 3], [1, 2, 3], source="test")
