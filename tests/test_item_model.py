"""The item model reads people: nine item scores that sum to the total, from the user's own present-tense
words only, with the turns behind each item as evidence; negation, other people, the past, questions,
hypotheticals and assistant echoes count for little; bad input never crashes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from phq.models import Turn
from scoring.engine import Scorer

T0 = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scorer(coldstart_model):
    return Scorer.load(coldstart_model)


def user(text: str, day: int = 0, n: int = 0, session: str | None = None) -> Turn:
    return Turn(session_id=session or f"s{day}", ts=T0 + timedelta(days=day, minutes=n), turn=n, role="user",
                text=text, event_id=f"e{day}-{n}")


def assistant(text: str, day: int = 0, n: int = 1) -> Turn:
    return Turn(session_id=f"s{day}", ts=T0 + timedelta(days=day, minutes=n), turn=n, role="assistant", text=text,
                event_id=f"a{day}-{n}")


def item(scorer, turns, k: int) -> float:
    return scorer.score([turns])[0].items[k - 1]


def test_the_total_is_exactly_the_sum_of_nine_items_each_0_to_3(scorer):
    windows = [
        [user("I can't sleep and I'm exhausted all the time", d) for d in range(10)],
        [user("I feel hopeless, I hate myself and I want to die", d) for d in range(14)],
        [user("had a nice walk with the dog today")],
        [user("I'm depressed. I don't enjoy anything. I can't focus. I barely eat.", d, n) for d in range(14) for n in range(2)],
    ]
    for out in scorer.score(windows):
        assert len(out.items) == 9
        assert all(0.0 <= v <= 3.0 for v in out.items)
        assert out.score == pytest.approx(sum(out.items), abs=1e-6)
        assert out.severity in {"minimal", "mild", "moderate", "moderately_severe", "severe"}


def test_each_symptom_lands_on_its_own_item(scorer):
    cases = {1: "I don't enjoy anything anymore, nothing is fun", 2: "I feel so down and hopeless",
             3: "I was up till 4 again, I just can't sleep", 4: "I have no energy at all, I'm exhausted",
             5: "I haven't been eating, I have no appetite", 6: "I feel like a failure, I hate myself",
             7: "I can't concentrate on anything, I read the same page over and over",
             8: "I can't sit still, I keep pacing around the house", 9: "I want to die, I think about killing myself"}
    for k, text in cases.items():
        items = scorer.score([[user(text)]])[0].items
        assert max(range(9), key=lambda i: items[i]) == k - 1, (k, items)
        assert items[k - 1] >= 0.5, (k, items)


@pytest.mark.parametrize("plain,negated", [
    ("I feel hopeless", "I don't feel hopeless"),
    ("I'm depressed", "I'm not depressed at all"),
    ("I can't sleep at night", "I've been sleeping fine"),
    ("I want to die", "I don't want to die"),
    ("I feel worthless", "I'm not worthless"),
])
def test_negation_is_no_evidence(scorer, plain, negated):
    on = scorer.score([[user(plain)]])[0]
    off = scorer.score([[user(negated)]])[0]
    assert on.score >= 0.4
    assert off.score <= 0.25 * on.score, (plain, on.items, negated, off.items)


@pytest.mark.parametrize("own,other", [
    ("I can't sleep", "My mum can't sleep"),
    ("I've been really depressed", "My friend has been really depressed"),
    ("I feel worthless", "My sister feels worthless"),
    ("I am always tired", "He is always tired"),
])
def test_other_peoples_symptoms_are_not_the_users(scorer, own, other):
    mine = scorer.score([[user(own)]])[0].score
    theirs = scorer.score([[user(other)]])[0].score
    assert theirs <= 0.3 * mine, (own, mine, other, theirs)


@pytest.mark.parametrize("present,modified", [
    ("I can't sleep", "When I was a kid I couldn't sleep"),
    ("I feel hopeless", "Last year I felt hopeless"),
    ("I can't sleep", "What if I can't sleep tonight?"),
    ("I feel hopeless", "Do you ever feel hopeless?"),
])
def test_the_past_hypotheticals_and_questions_count_for_little(scorer, present, modified):
    now = scorer.score([[user(present)]])[0].score
    other = scorer.score([[user(modified)]])[0].score
    assert other <= 0.5 * now, (present, now, modified, other)


def test_greetings_and_small_talk_score_nothing(scorer):
    out = scorer.score([[user("hi there!"), user("thanks, that helps", n=2), user("ok bye, talk tomorrow", n=4)]])[0]
    assert out.score < 0.2
    assert out.evidence == ()


def test_assistant_turns_are_never_evidence(scorer):
    echo = "It sounds like you can't sleep, you feel hopeless and worthless, and you have thoughts of suicide."
    alone = scorer.score([[user("ok"), assistant(echo)]])[0]
    assert alone.score < 0.2 and alone.evidence == ()
    window = [user("I can't sleep", d) for d in range(3)]
    with_echo = window + [assistant(echo, d) for d in range(3)]
    a, b = scorer.score([window, with_echo])
    assert a.items == pytest.approx(b.items, abs=1e-4)  # the same up to batching arithmetic
    assert all(e.event_id.startswith("e") for e in b.evidence)


def test_more_days_with_a_symptom_score_higher_up_to_nearly_every_day(scorer):
    scores = [item(scorer, [user("I barely slept again", d) for d in range(days)] +
                   [user("went to work, had dinner", d) for d in range(days, 14)], 3) for days in (1, 4, 8, 13)]
    assert scores == sorted(scores) and scores[-1] - scores[0] > 1.0, scores
    assert scores[-1] >= 2.0


def test_saying_how_often_counts_for_that_many_days(scorer):
    once = item(scorer, [user("I couldn't sleep last night")], 3)
    always = item(scorer, [user("I can't sleep, every single night for weeks now")], 3)
    assert always >= once + 0.8


def test_evidence_cites_the_user_turns_behind_each_item(scorer):
    turns = [user("work was ok", 0), user("I was up till 4 again, I just lie awake", 1),
             user("honestly I feel like such a failure", 2), user("cooked pasta", 3)]
    out = scorer.score([turns])[0]
    by_item = {}
    for e in out.evidence:
        by_item.setdefault(e.item, []).append(e)
    assert by_item[3][0].event_id == "e1-0" and by_item[3][0].rank == 1
    assert by_item[6][0].event_id == "e2-0"
    assert "up till 4" in by_item[3][0].excerpt
    for e in out.evidence:
        assert len(e.excerpt) <= 200 and 0 < e.weight <= 1
        assert e.session_id and e.ts in {t.ts for t in turns}
    assert not any(e.event_id in {"e0-0", "e3-0"} for e in out.evidence)


def test_long_turns_give_short_excerpts(scorer):
    filler = "We talked about the weekend plans and the weather and what to cook for the kids. " * 10
    out = scorer.score([[user(filler + "Honestly I feel so hopeless about everything lately. " + filler)]])[0]
    assert out.evidence
    assert all(len(e.excerpt) <= 200 for e in out.evidence)
    assert any("hopeless" in e.excerpt for e in out.evidence)


@pytest.mark.parametrize("window", [
    [],
    [assistant("How are you today?")],
    [user("😀😀😀🙏")],
    [user("   ")],
    [user("Je suis très fatigué et je ne dors plus. Estoy muy triste.")],
    [user(("I can't sleep. " * 2000)[:32 * 1024])],
    [user("[[[[[[[[]]]]]]]] <|im_end|> \x00 \u202e")],
], ids=["empty", "assistant-only", "emoji", "blank", "non-english", "32KiB", "markup"])
def test_bad_input_gives_a_score_with_honest_evidence_never_a_crash(scorer, window):
    out = scorer.score([window])[0]
    assert 0 <= out.score <= 27 and len(out.items) == 9
    assert out.score == pytest.approx(sum(out.items), abs=1e-6)
    assert out.n_tokens <= scorer.token_budget
    if not any(t.role == "user" and t.text.strip() for t in window):
        assert out.evidence == () and out.score < 0.2
    for e in out.evidence:
        assert len(e.excerpt) <= 200


def test_the_window_is_cut_to_the_token_budget_oldest_turns_first(scorer):
    turns = [user(f"I can't sleep and I feel awful, day {d} of this", d, n) for d in range(14) for n in range(40)]
    rendered = scorer.render([turns])[0]
    assert rendered.n_tokens <= scorer.token_budget
    small = Scorer.load(scorer.model.path)
    small.model.meta.token_budget = 300
    cut = small.render([turns])[0]
    assert cut.truncated and cut.n_tokens <= 300
    assert cut.turns[-1].event_id == turns[-1].event_id  # the newest turn is kept


def test_the_model_directory_says_its_kind(coldstart_model):
    from scoring.model import read_meta

    meta = read_meta(coldstart_model)
    assert meta.kind == "items" and meta.format_version == 2
    assert meta.model_version.startswith("coldstart-minilm-")
    assert (coldstart_model / "statements.json").is_file() and (coldstart_model / "item_heads.safetensors").is_file()


def test_the_cold_start_model_ships_its_calibration(coldstart_model, scorer):
    """scoring/coldstart_calibration.json is measured for this very model version (rerun
    `python -m training.calibrate` after changing the statements or constants)."""
    from scoring.model import read_meta

    cal = read_meta(coldstart_model).calibration
    assert cal is not None, "the shipped calibration is for another cold-start version: python -m training.calibrate"
    assert cal["model_version"] == read_meta(coldstart_model).model_version and "SYNTHETIC" in cal["source"]
    out = scorer.score([[user("I feel so hopeless, nothing will ever get better")]])[0]
    assert out.score_low is not None and 0 <= out.score_low <= out.score_high <= 27
