"""Rendering a window: chat-templated, session headers, newest turns kept, deterministic."""

from __future__ import annotations

import pytest

from scoring.model import Template, build_untrained, load_tokenizer
from scoring.render import render_window
from scoring.testing import FakeTurn, build_tiny_bert, make_window


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_untrained(tmp_path_factory.mktemp("m") / "untrained"))


def _text(tokenizer, rendered) -> str:
    return tokenizer.decode(rendered.input_ids)


def test_rendering_is_deterministic_and_independent_of_input_order(tokenizer):
    window = make_window(3, 4)
    first = render_window(window, tokenizer, 2048)
    assert render_window(list(reversed(window)), tokenizer, 2048) == first
    assert render_window(window, load_tokenizer(tokenizer.name_or_path), 2048).input_ids == first.input_ids


def test_turns_are_role_tagged_and_sessions_dated(tokenizer):
    window = make_window(2, 2)
    text = _text(tokenizer, render_window(window, tokenizer, 2048))
    assert text.count("<|im_start|>user\n") == 2 and text.count("<|im_start|>assistant\n") == 3  # + the prompt
    assert "[session of 2026-01-05 Mon 09:00 UTC]" in text and "[session of 2026-01-06 Tue 09:00 UTC]" in text
    assert text.index(window[0].text) < text.index(window[1].text) < text.index(window[2].text)


def test_truncation_drops_the_oldest_turns_first(tokenizer):
    window = make_window(4, 4, words=12)
    full = render_window(window, tokenizer, 4096)
    cut = render_window(window, tokenizer, full.n_tokens // 2)
    assert cut.n_tokens <= full.n_tokens // 2 and cut.truncated and not full.truncated
    kept = window[len(window) - cut.n_turns_kept :]
    assert cut.window_start == kept[0].ts
    text = _text(tokenizer, cut)
    for t in kept[1:]:
        assert t.text in text  # every kept turn but the oldest is whole
    assert window[0].text.split()[0] not in text
    assert text.rstrip().endswith(window[-1].text + "<|im_end|>\n<|im_start|>assistant")


def test_only_the_oldest_kept_turn_loses_its_beginning(tokenizer):
    long = FakeTurn("a", make_window(1, 1)[0].ts, 0, "user", " ".join(f"w{i}" for i in range(400)))
    rendered = render_window([long], tokenizer, 300)
    assert rendered.n_tokens == 300 and rendered.n_turns_kept == 1
    text = _text(tokenizer, rendered)
    assert "w399<|im_end|>" in text and "w0 " not in text
    assert "[session of" in text  # the header survives the cut


def test_a_moved_session_header_appears_once_per_session(tokenizer):
    window = make_window(2, 6)
    for budget in range(150, 400, 25):
        text = _text(tokenizer, render_window(window, tokenizer, budget))
        assert text.count("[session of") <= 2
        if "s1." in text:
            assert text.count("[session of 2026-01-06") == 1


def test_control_tokens_typed_by_a_user_stay_text(tokenizer):
    turn = FakeTurn("a", make_window(1, 1)[0].ts, 0, "user", "hi <|im_end|> there")
    ids = render_window([turn], tokenizer, 2048).input_ids
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids.count(im_end) == 2  # the system prompt's close and the turn's: none from the user's text


def test_encoder_without_chat_template_renders_plain_lines(tmp_path):
    tok = load_tokenizer(build_tiny_bert(tmp_path / "bert"))
    rendered = render_window(make_window(1, 2), tok, 512, Template(kind="plain"))
    assert rendered.input_ids[0] == tok.cls_token_id and rendered.input_ids[-1] == tok.sep_token_id
    words = "".join(tok.convert_ids_to_tokens(rendered.input_ids)).replace("##", "")
    assert "user:" in words and "assistant:" in words


# The parts of Qwen3's template that make splitting it non-trivial: the system message only first,
# and a think block on an assistant turn after the last user query and in the generation prompt.
QWEN3_LIKE = (
    "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- set ns = namespace(last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}{%- if message.role == 'user' %}"
    "{%- set ns.last_query_index = (messages|length - 1) - loop.index0 %}{%- break %}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- if loop.index0 > ns.last_query_index and loop.last %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
)


def test_a_qwen3_style_template_gives_plain_role_markers_and_its_generation_prompt():
    from scoring.model import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = QWEN3_LIKE
    text = tok.decode(render_window(make_window(1, 2), tok, 2048).input_ids)
    assert "<|im_start|>assistant\n" + make_window(1, 2)[1].text + "<|im_end|>" in text  # no think block mid-transcript
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert text.count("<|im_start|>system") == 1
