"""Change events of CONTRACT section 3, as rules on two consecutive scores."""

from phq.changes import RELIABLE_CHANGE, SEVERITY_BAND_CHANGE, THRESHOLD_CROSSING, detect_changes


def kinds(previous, current, **kw):
    return {c.kind for c in detect_changes(previous, current, **kw)}


def test_no_change_within_a_band_below_the_reliable_change():
    assert kinds(11, 14) == set()


def test_reliable_change_at_exactly_five_points():
    assert RELIABLE_CHANGE in kinds(2, 7)
    assert RELIABLE_CHANGE not in kinds(2, 6.99)


def test_threshold_crossing_in_both_directions_at_ten():
    assert kinds(9.5, 10) == {THRESHOLD_CROSSING, SEVERITY_BAND_CHANGE}
    assert kinds(10, 9.9) == {THRESHOLD_CROSSING, SEVERITY_BAND_CHANGE}


def test_band_change_without_crossing_the_clinical_threshold():
    assert kinds(4.9, 5) == {SEVERITY_BAND_CHANGE}


def test_all_three_kinds_with_direction_and_delta():
    changes = detect_changes(3, 16)
    assert {c.kind for c in changes} == {RELIABLE_CHANGE, THRESHOLD_CROSSING, SEVERITY_BAND_CHANGE}
    assert {c.direction for c in changes} == {"worsening"}
    assert changes[0].delta == 13 and changes[0].previous_severity == "minimal"
    assert changes[0].current_severity == "moderately_severe"


def test_improvement_is_negative_delta():
    (change,) = [c for c in detect_changes(22, 12) if c.kind == RELIABLE_CHANGE]
    assert change.direction == "improvement" and change.delta == -10


def test_thresholds_are_settings():
    assert kinds(2, 5, reliable_change=3, clinical_threshold=4) == {RELIABLE_CHANGE, THRESHOLD_CROSSING,
                                                                     SEVERITY_BAND_CHANGE}
