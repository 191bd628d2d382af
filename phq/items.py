"""The PHQ-9's own structure: its nine items and the frequency rule that maps days to an item score.

Shared by the item model (scoring), `phq synth`'s labels, evaluation (training) and the dashboard (care),
so the questionnaire is written down once. No heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass

N_ITEMS = 9
ITEM_MAX = 3.0
WINDOW_DAYS = 14  # "over the last 2 weeks"


@dataclass(frozen=True)
class Item:
    number: int  # 1..9, questionnaire order
    key: str  # short name used in files and APIs
    label: str  # what a clinician reads on the dashboard
    wording: str  # the questionnaire's own wording


ITEMS: tuple[Item, ...] = (
    Item(1, "anhedonia", "Little interest or pleasure", "Little interest or pleasure in doing things"),
    Item(2, "depressed_mood", "Feeling down or hopeless", "Feeling down, depressed, or hopeless"),
    Item(3, "sleep", "Sleep problems", "Trouble falling or staying asleep, or sleeping too much"),
    Item(4, "fatigue", "Tired, little energy", "Feeling tired or having little energy"),
    Item(5, "appetite", "Appetite or overeating", "Poor appetite or overeating"),
    Item(6, "worthlessness", "Feeling bad about yourself",
         "Feeling bad about yourself, or that you are a failure or have let yourself or your family down"),
    Item(7, "concentration", "Trouble concentrating",
         "Trouble concentrating on things, such as reading the newspaper or watching television"),
    Item(8, "psychomotor", "Slowed down or restless",
         "Moving or speaking so slowly that other people could have noticed, or the opposite, being so fidgety "
         "or restless that you have been moving around a lot more than usual"),
    Item(9, "self_harm", "Thoughts of death or self-harm",
         "Thoughts that you would be better off dead, or of hurting yourself in some way"),
)
ITEM_KEYS: tuple[str, ...] = tuple(i.key for i in ITEMS)

# The answer options: 0 "not at all", 1 "several days", 2 "more than half the days", 3 "nearly every day".
# Read as days of the 14: 0-1 not at all, 2-7 several, 8-11 more than half, 12-14 nearly every day.
# The real-valued map is piecewise linear through the bins' edges at the half points (1.5 -> 0.5,
# 7.5 -> 1.5, 11.5 -> 2.5), so rounding it gives the questionnaire's answer exactly.
_DAY_ANCHORS = ((0.0, 0.0), (1.5, 0.5), (7.5, 1.5), (11.5, 2.5), (14.0, 3.0))


def item_score_from_days(days: float) -> float:
    """A real-valued item score 0..3 from the (possibly fractional, estimated) days of 14 with the symptom."""
    d = min(float(WINDOW_DAYS), max(0.0, float(days)))
    for (x0, y0), (x1, y1) in zip(_DAY_ANCHORS, _DAY_ANCHORS[1:]):
        if d <= x1:
            return y0 + (y1 - y0) * (d - x0) / (x1 - x0)
    return ITEM_MAX


def item_answer_from_days(days: int) -> int:
    """The questionnaire's answer (0..3) for a whole number of days of 14 with the symptom."""
    if days <= 1:
        return 0
    if days <= 7:
        return 1
    if days <= 11:
        return 2
    return 3
