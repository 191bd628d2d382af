"""A stand-in teacher: a local HTTP server speaking the OpenAI chat-completions protocol whose "model"
is a rule-based reader of `phq synth`'s own grammar (training/phrases.py), and the same reader as a
plain function (`rate_window`, the builtin teacher until the cold-start item model replaces it).
Not an LLM and not a measure of one: it knows the generator's sentences, so it is an upper bound on
reading them, and it must still guess how often a symptom was there on days the user did not chat.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from phq.items import N_ITEMS, WINDOW_DAYS, item_answer_from_days
from training import phrases as P

VERSION = "stand-in-rules-v2"
DISCLOSURE_GUESS = 0.7  # how often a user mentions a symptom they have, on a day they chat
_PRESENT = [re.compile("|".join(f"(?<![a-z']){P.template_pattern(t)}(?![a-z])" for fam in item["families"] for t in fam))
            for item in P.ITEMS]
_NOT_THEIRS_NOW = re.compile(r"(?:^|\s)'|wouldn't say|it's not like|people assume")  # quoted, or denied
_SPANS = [(lowest, re.compile("|".join(re.escape(w) for w in train + test))) for lowest, train, test in P.SPANS]
_SESSION = re.compile(r"^\[session of (\d{4}-\d{2}-\d{2})")


def rate(transcript: str) -> list[dict]:
    """Nine {item, score, evidence} ratings of a transcript (`User:` lines under `[session of DATE]` headers):
    per item, the days with a present first-person mention, scaled up for days not chatted on, at least
    what a frequency phrase says, mapped by the questionnaire's rule."""
    dates: set[str] = set()
    seen: list[dict[str, str]] = [{} for _ in range(N_ITEMS)]  # item -> {date: evidence}
    said_days = [0] * N_ITEMS
    date = ""
    for line in transcript.splitlines():
        m = _SESSION.match(line.strip())
        if m:
            date = m.group(1)
            dates.add(date)
            continue
        if not line.startswith("User: "):
            continue
        for sentence in re.split(r"(?<=[.?!])\s+", line[len("User: "):]):
            low = sentence.lower()
            if _NOT_THEIRS_NOW.search(low):
                continue
            for i, pattern in enumerate(_PRESENT):
                hit = pattern.search(low)
                if hit:
                    seen[i][date] = sentence[hit.start():hit.end()]
                    said_days[i] = max([said_days[i]] + [lowest for lowest, p in _SPANS if p.search(low)])
    out = []
    for i in range(N_ITEMS):
        days = min(WINDOW_DAYS, len(seen[i]) / max(len(dates), 1) * WINDOW_DAYS / DISCLOSURE_GUESS) if seen[i] else 0
        score = item_answer_from_days(round(max(days, said_days[i])))
        evidence = next(reversed(seen[i].values())) if seen[i] and score > 0 else ""
        out.append({"item": i + 1, "score": score, "evidence": evidence})
    return out


def rate_window(ex) -> list[float]:
    """Nine item ratings (0..3) of one window (`training.data.Example`): the builtin teacher's signature."""
    from training.pseudolabel import transcript_text

    text, _ = transcript_text(ex, max_chars=10**7)
    return [float(it["score"]) for it in rate(text)]


class _Handler(BaseHTTPRequestHandler):
    server: "StandInTeacher"

    def log_message(self, *args):  # no request logs: requests hold transcripts
        pass

    def do_POST(self):
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        fault = self.server.next_fault()
        self.server.requests += 1
        if fault == "http500":
            self.send_response(500)
            self.end_headers()
            return
        transcript = body["messages"][-1]["content"]
        items = rate(transcript)
        content = json.dumps({"items": items})
        if fault == "garbage":
            content = "Sure! Here are the ratings: item 1 is maybe a 2."
        elif fault == "fence":
            content = "```json\n" + content + "\n```"
        elif fault == "invented_quote":
            items[0] = {"item": 1, "score": 2, "evidence": "words nobody said"}
            content = json.dumps({"items": items})
        elif fault == "string_score":
            items[1]["score"] = str(items[1]["score"])
            content = json.dumps({"items": items})
        reply = {"id": "standin", "object": "chat.completion", "model": body.get("model", "stand-in"),
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StandInTeacher(ThreadingHTTPServer):
    """`with StandInTeacher(faults=[...]) as t: t.url` -> http://127.0.0.1:PORT/v1. Faults are served in order,
    one per request ("ok", "garbage", "fence", "http500", "invented_quote", "string_score"), then "ok"."""

    daemon_threads = True

    def __init__(self, faults: list[str] | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.faults = list(faults or [])
        self.requests = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def next_fault(self) -> str:
        with self._lock:
            return self.faults.pop(0) if self.faults else "ok"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
