"""From a user turn to the clauses the item model reads, each with what it says about whom and when.

Plain functions over text (no model): clause splitting, and the cues that break similarity, so a
clause about someone else, the distant past, a hypothetical, a question to the assistant or a denial
("I don't feel hopeless") counts for little however close its words are to a symptom; and the cues of
how often ("every night", "some days") that the questionnaire's frequency scale asks about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CLAUSE_CHARS = 300  # longer clauses are cut into pieces of about this size (the encoder reads ~128 tokens)
MIN_CLAUSE_CHARS = 2

_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"')\]]*\s+|\n+|(?<=[.!?])(?=[A-Z])")
# Clause boundaries inside a sentence: "I'm fine but I can't sleep" is two statements.
_CLAUSE_BREAK = re.compile(
    r"\s*(?:;|\s-\s|\s\u2013\s|,?\s+but\s+|,?\s+although\s+|,?\s+though\s+|,?\s+however,?\s+|,?\s+because\s+)\s*",
    re.I)
# "I'm depressed and unable to connect": two statements, cut where both sides are long enough to be one
# ("I can't eat and sleep" stays whole).
_AND = re.compile(r",?\s+and\s+", re.I)
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Clause:
    text: str  # as the user wrote it (excerpts quote this)
    core: str  # what the encoder reads: without discourse fillers and how-often phrases (cues carry those)
    start: int  # character offset in the turn's text
    end: int
    weight: float  # 0..1: how much this clause can say about the user's own present state
    span_days: float  # days of the 14 that the clause itself says the feeling spans (1: one occasion)
    cues: tuple[str, ...]  # which cues fired (for evidence and tests)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a turn's text, in order."""
    return _spans(text, _SENTENCE_END, 0, len(text))


def split_clauses(text: str, max_clauses: int | None = None) -> list[tuple[str, int, int]]:
    """(clause, start, end) of a turn's text, in order; whitespace-only pieces dropped."""
    out: list[tuple[str, int, int]] = []
    for s_start, s_end in sentence_spans(text):
        for c_start, c_end in _and_spans(text, _spans(text, _CLAUSE_BREAK, s_start, s_end)):
            for p_start, p_end in _chunks(text, c_start, c_end):
                piece = text[p_start:p_end].strip()
                if len(piece) >= MIN_CLAUSE_CHARS and any(ch.isalnum() for ch in piece):
                    lead = len(text[p_start:p_end]) - len(text[p_start:p_end].lstrip())
                    out.append((piece, p_start + lead, p_start + lead + len(piece)))
                    if max_clauses is not None and len(out) >= max_clauses:
                        return out
    return out


def _spans(text: str, pattern: re.Pattern, start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for m in pattern.finditer(text, start, end):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = max(pos, m.end())
    if pos < end:
        spans.append((pos, end))
    return spans


def _and_spans(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, end in spans:
        pos = start
        for m in _AND.finditer(text, start, end):
            if len(text[pos:m.start()].split()) >= 2 and len(text[m.end():end].split()) >= 3:
                out.append((pos, m.start()))
                pos = m.end()
        out.append((pos, end))
    return out


def _chunks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut an over-long clause at spaces into pieces of at most MAX_CLAUSE_CHARS."""
    pieces = []
    while end - start > MAX_CLAUSE_CHARS:
        cut = text.rfind(" ", start + MAX_CLAUSE_CHARS // 2, start + MAX_CLAUSE_CHARS)
        cut = cut if cut > start else start + MAX_CLAUSE_CHARS
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


# ------------------------------------------------------------------------------------------ cues

_FIRST_PERSON = re.compile(r"\b(i|i'm|im|i've|ive|i'd|i'll|me|my|myself|mine)\b")
_PEOPLE = (
    r"mum|mom|mother|dad|father|parents?|brother|sister|sibling|son|daughter|kids?|children|child|baby|"
    r"husband|wife|partner|boyfriend|girlfriend|fianc[eé]e?|friends?|best friend|roommate|flatmate|"
    r"boss|manager|colleague|coworker|co-worker|teacher|neighbou?r|grandma|grandmother|grandpa|"
    r"grandfather|aunt|uncle|cousin|family|dog|cat|ex"
)
# The clause is about someone else: it opens with another person as its subject.
_OTHER_SUBJECT = re.compile(
    rf"^(?:and\s+|so\s+|also\s+|now\s+)?(?:(?:my|our|his|her|their|the)\s+(?:\w+\s+)?(?:{_PEOPLE})\b|"
    r"(?:he|she|they|he's|she's|they're|hes|shes|theyre|his|her|their)\b)"
)
_SELF_SUBJECT = re.compile(r"\b(i|i'm|im|i've|ive|i'd|i'll)\b")
# Blows that reach the user through someone else ("my dad has cancer", "she left me"): not someone
# else's symptom, so not discounted as one.
_LOSS = re.compile(r"\b(died|dies|dying|passed away|passing|death|cancer|terminal|diagnosed|left me|leaving me|dumped me|"
                   r"divorc\w*|cheat\w*|missing|fired me|laid me off|evict\w*|hospital\w*|accident|killed|suicide|"
                   r"miscarr\w*|abus\w*|hits me|hit me|hurt me|broke up with me)\b")
_PAST = re.compile(
    r"\b(last (?:year|summer|winter|spring|autumn|fall)|(?:years|months) ago|a (?:long|few years) ago|"
    r"when i was (?:a |an |in |at )?(?:kid|child|little|young|younger|teen|teenager|student|school|college|uni|\d+)|"
    r"as a (?:kid|child|teen|teenager)|in (?:high school|college|university|my twenties|my teens)|"
    r"back then|in the past|used to|once had|had been|childhood|growing up)\b"
)
# Present-tense markers that undo a past cue: "I used to love painting but now I can't be bothered".
_NOW = re.compile(r"\b(now|anymore|any more|no longer|lately|recently|these days|this week|still|again|currently|today|tonight|"
                  r"since|started|began|for the (?:past|last))\b")
_HYPOTHETICAL = re.compile(r"^(?:and\s+|but\s+|so\s+)?(?:what if|if|suppose|imagine|in case|what happens if|should i ever)\b")
_QUESTION_TO_OTHER = re.compile(
    r"^(?:and\s+|so\s+)?(?:do|did|have|has|are|were|is|can|could|would|will|should)\s+(?:you|they|people|others|most people)\b|"
    r"^(?:how|what|why|when|where)\s+(?:do|does|did|are|is|can|should)\s+(?:you|people|they|someone|one)\b"
)
_GENERAL_QUESTION = re.compile(r"^(?:what|which) (?:are|is) (?:the )?(?:signs?|symptoms?|causes?|treatments?)\b")
# Denials: the clause says the symptom is absent ("I don't feel hopeless", "no trouble sleeping").
_SYMPTOM_WORDS = (r"(?:depressed|down|sad|hopeless|suicidal|tired|exhausted|worthless|a failure|restless|low|empty|"
                  r"anxious|bad about myself|like a failure|like dying|like hurting myself)")
_DENIAL = re.compile(
    rf"\b(?:i'?m|i am|im)\s+not\s+(?:feeling\s+|really\s+|that\s+|too\s+|at all\s+)?(?:{_SYMPTOM_WORDS}|going to (?:hurt|kill|harm))\b|"
    rf"\b(?:i\s+)?(?:don'?t|do not|didn'?t|never|haven'?t|have not|no longer)\s+(?:really\s+)?(?:feel|felt|feeling|been feeling)\s+"
    rf"(?:that\s+|very\s+|too\s+)?{_SYMPTOM_WORDS}\b|"
    r"\b(?:i\s+)?(?:don'?t|do not|never|haven'?t)\s+(?:really\s+)?(?:want to (?:die|hurt myself|harm myself|kill myself)|"
    r"think about (?:suicide|killing myself|hurting myself|dying)|have (?:any )?(?:trouble|problems?|issues?) "
    r"(?:with )?(?:sleep|sleeping|eating|my appetite|focus|focusing|concentrating))\b|"
    r"\bno\s+(?:trouble|problems?|issues?|thoughts?)\s+(?:with\s+|of\s+)?(?:sleep|sleeping|eating|appetite|focus|concentrat|"
    r"energy|hurting|harming|suicide|self)|"
    r"\b(?:my\s+)?(?:sleep|sleeping|eating|appetite|energy|mood|focus)\s+(?:has been|is|was|'s|seems)\s+(?:fine|good|great|okay|ok|"
    r"normal|better)\b|"
    r"\bnever\s+(?:tried|contemplated|considered|attempted)\s+(?:suicide|killing|hurting|self)"
)
# "Sleeping fine" is a denial only in a clause with no negation ("I haven't been sleeping well" is not).
_FINE = re.compile(r"\b(?:slept|sleeping|sleep|eating|ate)\s+(?:really\s+)?(?:fine|great|well|normally|ok|okay)\b")
_NEGATION = re.compile(r"\b(?:not|no|never|can'?t|cannot|couldn'?t|won'?t|haven'?t|hasn'?t|didn'?t|don'?t|doesn'?t|isn'?t|wasn'?t)\b")


def _denies(low: str) -> bool:
    return bool(_DENIAL.search(low)) or (bool(_FINE.search(low)) and not _NEGATION.search(low))


_ALWAYS = re.compile(
    r"\b(every (?:single )?(?:day|night|morning|evening)|all the time|constantly|always|nonstop|non-stop|24/7|"
    r"nearly every|almost every|day after day|night after night|for (?:weeks|months|years|ages|a long time)|"
    r"all day|all night|can'?t remember the last time|every time)\b"
)
_OFTEN = re.compile(r"\b(most (?:days|nights|mornings|of the time)|often|usually|a lot lately|more and more|"
                    r"most of the week|several (?:times|days|nights)|the past (?:few|couple of) (?:days|weeks)|lately|again)\b")
_SOMETIMES = re.compile(r"\b(sometimes|some days|some nights|occasionally|once or twice|a couple of (?:times|days|nights)|"
                        r"now and then|from time to time|every now and then|once in a while)\b")

OTHER_PERSON_WEIGHT = 0.1
PAST_WEIGHT = 0.25
HYPOTHETICAL_WEIGHT = 0.3
QUESTION_TO_OTHER_WEIGHT = 0.15
DENIAL_WEIGHT = 0.05


def clause_cues(clause: str) -> tuple[float, float, tuple[str, ...]]:
    """(weight, span_days, cues fired) of one clause: how much it can count for the user's own present
    state, and how many of the 14 days it says the feeling covers."""
    low = clause.lower().replace("\u2019", "'").strip()
    cues: list[str] = []
    weight = 1.0
    if _OTHER_SUBJECT.search(low) and not _SELF_SUBJECT.search(low) and not _LOSS.search(low):
        cues.append("other_person")
        weight *= OTHER_PERSON_WEIGHT
    if _PAST.search(low) and not _NOW.search(low):
        cues.append("past")
        weight *= PAST_WEIGHT
    if _HYPOTHETICAL.search(low):
        cues.append("hypothetical")
        weight *= HYPOTHETICAL_WEIGHT
    if _QUESTION_TO_OTHER.search(low) or _GENERAL_QUESTION.search(low):
        cues.append("question_to_other")
        weight *= QUESTION_TO_OTHER_WEIGHT
    if _denies(low):
        cues.append("denial")
        weight *= DENIAL_WEIGHT
    if _ALWAYS.search(low):
        cues.append("always")
        span = 12.0
    elif _OFTEN.search(low):
        cues.append("often")
        span = 7.0
    elif _SOMETIMES.search(low):
        cues.append("sometimes")
        span = 3.0
    else:
        span = 1.0
    return weight, span, tuple(cues)


# Openers that carry no content ("to be honest", "ugh", "I don't know,"), and how-often phrases, which
# the cues read: left in, they pull a clause's embedding away from the statement it makes.
_FILLER = re.compile(
    r"^(?:(?:so|well|ugh|um+|uh+|hmm+|honestly|to be honest|tbh|like|anyway|ok|okay|yeah|yes|no|oh|i mean|"
    r"i don'?t know|idk|i guess|i think|basically|lol|and|but|also|plus|just|hi|hey|hello)\b[,.!:]*\s*)+", re.I)
_HOW_OFTEN = re.compile(
    r"\s*\b(?:(?:most|some|many|a few|a couple of|several|a lot of|nearly all|almost all|all) (?:of the )?(?:days|nights|"
    r"mornings|evenings|time|times)(?: (?:this|last|a|per) (?:week|fortnight|month))?|(?:every|each) (?:single )?"
    r"(?:day|night|morning|evening)(?: (?:this|last) (?:week|fortnight))?|(?:once|twice|a couple of times|a few times|"
    r"several times) (?:this|last|a) (?:week|fortnight)|this (?:week|fortnight)|these days|lately|recently|"
    r"all the time|nearly every day|almost every day|again)\b", re.I)


def core_text(clause: str) -> str:
    """The clause as the encoder should read it: fillers and how-often phrases out (never emptied)."""
    core = _HOW_OFTEN.sub("", _FILLER.sub("", clause.strip())).strip(" ,.;:-")
    return core if len(core) >= MIN_CLAUSE_CHARS and any(ch.isalnum() for ch in core) else clause.strip()


def clauses(text: str, max_clauses: int | None = None) -> list[Clause]:
    out = []
    for piece, start, end in split_clauses(text, max_clauses):
        weight, span, cues = clause_cues(piece)
        out.append(Clause(piece, core_text(piece), start, end, weight, span, cues))
    return out


def excerpt(text: str, start: int, end: int, limit: int = 200) -> str:
    """At most `limit` characters of `text` around the clause at [start, end): its sentence when that
    fits, else a window around the clause; an ellipsis marks each side cut inside the sentence."""
    dot = text.rfind(". ", 0, start)
    s_start = max(dot + 2 if dot >= 0 else 0, text.rfind("\n", 0, start) + 1)
    ends = [i + 1 for i in (text.find(". ", end), text.find("\n", end)) if i >= 0]
    s_end = min(ends) if ends else len(text)
    a, b = s_start, s_end
    if b - a > limit:  # the sentence is too long: a window around the clause
        a = max(s_start, start - max(0, limit - (end - start)) // 2)
        b = min(s_end, a + limit)
    piece = " ".join(text[a:b].split())
    prefix = "\u2026" if a > s_start else ""
    suffix = "\u2026" if b < s_end else ""
    room = limit - len(prefix) - len(suffix)
    if len(piece) > room:
        piece, suffix = piece[: room - (0 if suffix else 1)], "\u2026"
    return prefix + piece + suffix
