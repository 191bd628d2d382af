"""A stand-in teacher: a local HTTP server speaking the OpenAI chat-completions protocol whose
"model" is a rule-based reader of `phq synth`'s phrase banks. Not an LLM and not a measure of one:
it lets tests and the CPU study run the teacher path end to end where no LLM is available.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from training import synth

_HEDGE = re.compile(r"\b(maybe|i guess|possibly|i think|sort of|kind of)\b", re.I)


def rate(transcript: str) -> list[dict]:
    """Nine {item, score, evidence} ratings from the newest present-tense mention of each item in User lines."""
    out = [{"item": i + 1, "score": 0, "evidence": ""} for i in range(9)]
    for line in transcript.splitlines():
        if not line.startswith("User: "):
            continue
        text = line[len("User: "):]
        for sentence in re.split(r"(?<=[.?!])\s+", text):
            low = sentence.lower()
            for i, bank in enumerate(synth.SYMPTOMS):
                core = next((c for c in bank["now"] if c.lower() in low), None)
                if core is None:
                    continue
                level = next((lv for lv, words in synth.FREQUENCY.items() if any(w in low for w in words)), 1)
                if _HEDGE.search(sentence):
                    level = 1
                start = low.index(core.lower())
                out[i] = {"item": i + 1, "score": level, "evidence": sentence[start : start + len(core)]}
    return out


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
