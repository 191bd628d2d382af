"""The scorer as the worker and offline scoring use it: from settings, score windows, clip, severity."""

from __future__ import annotations

import json

import pytest

from scoring.engine import Scorer, coldstart_dir
from scoring.model import build_untrained, read_meta, resolve_model_path
from scoring.testing import make_window


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    return build_untrained(tmp_path_factory.mktemp("models") / "untrained")


def test_build_untrained_is_deterministic_and_cached(untrained, tmp_path):
    other = build_untrained(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (other / name).read_bytes() == (untrained / name).read_bytes()
    mtime = (other / "phq.json").stat().st_mtime_ns
    assert build_untrained(other) == other
    assert (other / "phq.json").stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert read_meta(other).model_version.startswith("untrained-")


def test_from_settings_builds_the_coldstart_item_model_outside_model_dir(tmp_path):
    model_dir = tmp_path / "models"
    scorer = Scorer.from_settings(str(model_dir), "", backend="transformers")
    assert scorer.model_version.startswith("coldstart-")
    assert read_meta(coldstart_dir(str(model_dir))).kind == "items"
    assert not coldstart_dir(str(model_dir)).is_relative_to(model_dir)
    assert resolve_model_path(str(model_dir), "") is None  # the built-in one never counts as newest


def test_score_returns_one_clipped_output_per_window(untrained):
    scorer = Scorer.load(untrained, backend="transformers")
    windows = [make_window(1, 2), make_window(3, 4), make_window(2, 3, words=40)]
    outputs = scorer.score(windows)
    assert len(outputs) == 3
    for out, window in zip(outputs, windows):
        assert 0 <= out.score <= 27
        assert out.n_tokens <= scorer.token_budget
        assert out.window_start == window[0].ts
        assert out.n_sessions == len({t.session_id for t in window})
        assert out.n_user_turns == sum(t.role == "user" for t in window)


def test_scores_are_clipped_and_given_the_contract_severity(untrained, tmp_path):
    for mean, expected_score, expected_severity in ((100.0, 27.0, "severe"), (-100.0, 0.0, "minimal")):
        path = _rescaled(untrained, tmp_path / f"m{mean}", mean)
        out = Scorer.load(path, backend="transformers").score([make_window(1, 2)])[0]
        assert (out.score, out.severity) == (expected_score, expected_severity)
        assert abs(out.raw - mean) < 50  # raw keeps the unclipped value


def test_newest_model_directory_is_picked(untrained, tmp_path):
    first = _rescaled(untrained, tmp_path / "models" / "a", 1.0)
    second = _rescaled(untrained, tmp_path / "models" / "b", 2.0)
    assert resolve_model_path(str(tmp_path / "models"), "") == second
    assert resolve_model_path(str(tmp_path / "models"), str(first)) == first


def _rescaled(src, dst, mean: float):
    """A copy of `src` whose target scaling centres outputs on `mean` (std tiny)."""
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "phq.json").read_text())
    meta.update(target_mean=mean, target_std=0.01, model_version=f"{meta['model_version']}-m{mean}")
    (dst / "phq.json").write_text(json.dumps(meta))
    return dst
