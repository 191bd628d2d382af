"""The token-budget batcher, and that batching changes no score."""

from __future__ import annotations

import random

import pytest
import torch

from scoring.backends import TransformersBackend
from scoring.batcher import arrival_batches, batch_stats, plan_batches
from scoring.model import build_untrained
from scoring.testing import build_tiny_bert, make_window


def _lengths(seed: int, n: int = 200) -> list[int]:
    rng = random.Random(seed)
    return [max(1, int(rng.lognormvariate(6, 1))) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_batches_stay_under_the_token_budget_and_cover_every_request_once(seed):
    lengths = _lengths(seed)
    budget = 4096
    batches = plan_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= budget or len(b) == 1


def test_a_request_longer_than_the_budget_runs_alone():
    assert plan_batches([10, 5000, 20], 1000, max_padding=None) == [[1], [2, 0]]


def test_long_requests_run_alone_without_padding():
    batches = plan_batches([3000, 2900, 100, 90], 16384, solo_min_tokens=2048)
    assert batches == [[0], [1], [2, 3]]
    assert batch_stats([3000, 2900, 100, 90], batches).padded_tokens == 3000 + 2900 + 200


def test_sorting_by_length_cuts_padding_against_arrival_order():
    lengths = _lengths(0)
    sorted_pad = batch_stats(lengths, plan_batches(lengths, 8 * max(lengths))).padding_fraction
    assert batch_stats(lengths, plan_batches(lengths, 8 * max(lengths), max_padding=0.1)).padding_fraction <= 0.1
    naive_pad = batch_stats(lengths, arrival_batches(len(lengths), 8)).padding_fraction
    assert sorted_pad < naive_pad / 3


def test_max_batch_size_caps_a_batch():
    assert all(len(b) <= 3 for b in plan_batches([5] * 10, 1000, max_batch_size=3))


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return build_untrained(tmp_path_factory.mktemp("m") / "untrained")


def _windows():
    return [make_window(n, k, words=w, tag=f"{n}{k}{w}") for n, k, w in [(1, 1, 4), (3, 4, 30), (2, 3, 8), (1, 2, 60), (4, 2, 4)]]


def test_batched_scores_equal_unbatched_scores(qwen):
    from scoring.engine import Scorer

    scorer = Scorer.load(qwen, backend="transformers", max_padding=None)
    rendered = scorer.render(_windows())
    batched = scorer.backend.predict(rendered)
    assert scorer.backend.last_stats.n_batches == 1 and scorer.backend.last_stats.padding_fraction > 0.3
    one_by_one = [scorer.backend.predict([r])[0] for r in rendered]
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    small = TransformersBackend(qwen, batch_tokens=800)
    assert small.predict(rendered) == pytest.approx(one_by_one, abs=1e-4)
    assert small.last_stats.n_batches > 1


def test_mask_free_decoder_path_equals_the_models_own_masked_forward(qwen):
    from scoring.engine import Scorer

    scorer = Scorer.load(qwen, backend="transformers")
    backend = scorer.backend
    rows = [r.input_ids for r in scorer.render(_windows())]
    assert backend.mask_free
    fast = backend.forward(rows)
    width = max(map(len, rows))
    ids = torch.tensor([r + [backend.pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.inference_mode():
        reference = backend.model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()
    assert fast == pytest.approx(reference, abs=1e-5)


def test_encoder_batched_scores_equal_unbatched_scores(tmp_path):
    from scoring.engine import Scorer

    scorer = Scorer.load(build_tiny_bert(tmp_path / "bert"), backend="transformers", max_padding=None)
    assert not scorer.backend.mask_free
    rendered = scorer.render(_windows())
    batched = scorer.backend.predict(rendered)
    assert batched == pytest.approx([scorer.backend.predict([r])[0] for r in rendered], abs=1e-4)
