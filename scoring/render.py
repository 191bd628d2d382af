"""Rendering a window (CONTRACT section 2) into model input; serving and training share it.

Role-tagged turns in the backbone's chat template (or plain "User:" lines), a dated header at each
session's first kept turn, cut to the token budget by dropping the oldest turns first; only the
oldest turn kept may lose its beginning. Deterministic: same turns and tokenizer, same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from scoring.model import Template

_SENTINELS = ("\x00PHQ_A\x00", "\x00PHQ_B\x00", "\x00PHQ_C\x00")
_PLAIN_ROLES = {"user": ("User: ", "\n"), "assistant": ("Assistant: ", "\n")}


@dataclass(frozen=True)
class Rendered:
    input_ids: list[int]
    n_tokens: int
    window_start: datetime | None  # ts of the oldest turn kept (None: no turn kept)
    n_turns_kept: int
    n_sessions: int  # sessions with a kept turn
    n_user_turns: int  # user turns kept
    truncated: bool  # some of the window did not fit the budget


@dataclass(frozen=True)
class _Frame:
    """The fixed token pieces around the turns, derived once per tokenizer and template."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    role_open: dict[str, tuple[int, ...]]
    role_close: dict[str, tuple[int, ...]]


def _ids(tokenizer, text: str) -> list[int]:
    # split_special_tokens: a user typing "<|im_end|>" gets its characters, not the control token.
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _special_ids(tokenizer, text: str) -> tuple[int, ...]:
    # Template markup is ours, so its special tokens are meant.
    if not text:
        return ()
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def _chat_text(tokenizer, messages: list[dict], generation: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _chat_pieces(tokenizer, system: str) -> tuple[str, str, dict, dict]:
    """Prefix, suffix and role markers, cut out of the chat template's rendering of sentinel messages.

    Rendered: prefix, user open, U, close, assistant open, A, close, user open, B, close. The
    assistant turn sits between two user turns because templates treat a final assistant turn
    specially. Every role must close the same way, which chat templates do.
    """
    u, a, b = _SENTINELS
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": u},
        {"role": "assistant", "content": a},
        {"role": "user", "content": b},
    ]
    text = _chat_text(tokenizer, messages)
    head, rest = text.split(u, 1)
    after_user, rest = rest.split(a, 1)
    after_assistant, close = rest.split(b, 1)
    if not (after_user.startswith(close) and after_assistant.startswith(close)):
        raise ValueError("the chat template closes roles differently; set the template kind to 'plain' in phq.json")
    assistant_open = after_user[len(close):]
    user_open = after_assistant[len(close):]
    if not head.endswith(user_open):
        raise ValueError("the chat template marks the first user turn unlike later ones; set the template kind to 'plain' in phq.json")
    prefix = head[: len(head) - len(user_open)]
    suffix = _chat_text(tokenizer, messages, generation=True)[len(text):]
    return prefix, suffix, {"user": user_open, "assistant": assistant_open}, {"user": close, "assistant": close}


@lru_cache(maxsize=16)
def _frame(tokenizer, template: Template) -> _Frame:
    return _build_frame(tokenizer, template)


def _build_frame(tokenizer, template: Template) -> _Frame:
    if template.kind == "chat" and getattr(tokenizer, "chat_template", None):
        prefix, suffix, opens, closes = _chat_pieces(tokenizer, template.system)
        return _Frame(
            prefix=_special_ids(tokenizer, prefix),
            suffix=_special_ids(tokenizer, suffix),
            role_open={r: _special_ids(tokenizer, t) for r, t in opens.items()},
            role_close={r: _special_ids(tokenizer, t) for r, t in closes.items()},
        )
    # Plain: [CLS]/[BOS] system prompt, lines of turns, [SEP]/[EOS]; encoders pool over all of it.
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    prefix = ([start] if start is not None else []) + _ids(tokenizer, template.system + "\n")
    return _Frame(
        prefix=tuple(prefix),
        suffix=tuple([end] if end is not None else []),
        role_open={r: tuple(_ids(tokenizer, o)) for r, (o, _) in _PLAIN_ROLES.items()},
        role_close={r: tuple(_ids(tokenizer, c)) for r, (_, c) in _PLAIN_ROLES.items()},
    )


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)


def session_date(ts: datetime) -> str:
    return _utc(ts).strftime("%Y-%m-%d %a %H:%M UTC")


def _order_key(t) -> tuple:
    return (_utc(t.ts), t.turn, t.session_id)


def render_window(turns, tokenizer, token_budget: int, template: Template | None = None) -> Rendered:
    """Model input for a window's turns, newest turns kept first when it exceeds `token_budget`."""
    template = template or Template()
    frame = _frame(tokenizer, template)
    turns = sorted(turns, key=_order_key)
    room = token_budget - len(frame.prefix) - len(frame.suffix)
    if room <= 0:
        raise ValueError(f"token budget {token_budget} leaves no room after the prompt's {token_budget - room} tokens; raise it")
    pieces, cut = _keep_newest(turns, tokenizer, template, frame, room)
    ids = list(frame.prefix)
    for open_, header, body, close in pieces:
        ids += open_
        ids += header
        ids += body
        ids += close
    ids += frame.suffix
    kept = turns[len(turns) - len(pieces):]
    return Rendered(
        input_ids=ids,
        n_tokens=len(ids),
        window_start=kept[0].ts if kept else None,
        n_turns_kept=len(kept),
        n_sessions=len({t.session_id for t in kept}),
        n_user_turns=sum(1 for t in kept if t.role == "user"),
        truncated=cut or len(kept) < len(turns),
    )


def _session_headers(turns, tokenizer, template: Template) -> dict[str, list[int]]:
    """One header per session, dated by its first turn in the window (stable however much is cut)."""
    headers: dict[str, list[int]] = {}
    for t in turns:
        if t.session_id not in headers:
            headers[t.session_id] = _ids(tokenizer, template.session_header.format(date=session_date(t.ts)))
    return headers


def _bodies(turns, tokenizer) -> list[list[int]]:
    if not turns:
        return []
    texts = [t.text for t in turns]
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _keep_newest(turns, tokenizer, template: Template, frame: _Frame, room: int) -> tuple[list[list], bool]:
    """(open, header, body, close) pieces of the newest turns that fit in `room`, oldest first; and
    whether the oldest kept turn lost its beginning.

    Walking back from the newest turn, a session's header sits on its oldest kept turn, so adding
    an older turn of the same session moves the header rather than adding another.
    """
    headers = _session_headers(turns, tokenizer, template)
    bodies = _bodies(turns, tokenizer)
    pieces: list[list] = []
    used = 0
    for t, body in zip(reversed(turns), reversed(bodies)):
        open_, close = frame.role_open[t.role], frame.role_close[t.role]
        header = headers[t.session_id]
        same_session = bool(pieces) and pieces[-1][4] == t.session_id
        fixed = len(open_) + len(close) + (0 if same_session else len(header))
        left = room - used
        cut = fixed + len(body) > left
        if cut:
            if left - fixed < 1:
                break
            body = body[len(body) - (left - fixed):]  # the oldest turn kept loses its beginning, never its end
        if same_session:
            pieces[-1][1] = []  # the header moves to this older turn of the same session
        pieces.append([open_, header, body, close, t.session_id])
        used += fixed + len(body)
        if cut:
            pieces.reverse()
            return [p[:4] for p in pieces], True
    pieces.reverse()
    return [p[:4] for p in pieces], False
