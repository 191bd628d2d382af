"""The token-budget batcher: which requests run together in one forward pass.

Packs by tokens (padded length x batch size stays under the budget), not by count; sorts by length
so neighbours pad little; puts transcripts of at least `solo_min_tokens` alone in a batch, where
they need no padding at all. Plain functions: the worker loop and the backends both call them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchStats:
    n_batches: int
    useful_tokens: int  # real tokens
    padded_tokens: int  # tokens computed, padding included (sum of batch size x longest)

    @property
    def padding_fraction(self) -> float:
        return 0.0 if self.padded_tokens == 0 else 1.0 - self.useful_tokens / self.padded_tokens


def plan_batches(
    lengths: list[int],
    token_budget: int,
    *,
    max_batch_size: int | None = None,
    solo_min_tokens: int | None = None,
    max_padding: float | None = 0.1,
) -> list[list[int]]:
    """Indices into `lengths` grouped into batches, longest first.

    A batch's padded size (its longest length x its size) stays within `token_budget`; a single
    request longer than the budget still gets a batch of its own (the renderer caps its length).
    `max_padding` bounds each batch's padding fraction, so short requests do not ride along in a
    wide batch (a new, narrower batch is cheaper).
    """
    if token_budget <= 0:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    useful = 0
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        width = longest * (len(current) + 1)
        fits = width <= token_budget
        full = max_batch_size is not None and len(current) >= max_batch_size
        full = full or (max_padding is not None and useful + lengths[i] < (1 - max_padding) * width)
        alone = solo_min_tokens is not None and lengths[i] >= solo_min_tokens
        if current and (not fits or full or alone):
            batches.append(current)
            current, useful = [], 0
        current.append(i)
        useful += lengths[i]
        if alone:
            batches.append(current)
            current, useful = [], 0
    if current:
        batches.append(current)
    return batches


def batch_stats(lengths: list[int], batches: list[list[int]]) -> BatchStats:
    useful = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return BatchStats(n_batches=len(batches), useful_tokens=useful, padded_tokens=padded)


def arrival_batches(n: int, batch_size: int) -> list[list[int]]:
    """The naive baseline: fixed-size batches in arrival order (for comparison, not for use)."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def padded(rows: list[list[int]], pad_id: int, device: str = "cpu"):
    """(ids, attention mask) tensors of one batch of token id lists, right-padded with `pad_id`."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[n, : len(row)] = 1
    return ids.to(device), mask.to(device)
