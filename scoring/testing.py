"""Small fixtures for tests of scoring and of what builds on it: synthetic turns and tiny models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_PHRASES = ["I feel tired and low", "slept badly again", "had a good walk today", "work is stressful", "thanks, that helps"]


@dataclass(frozen=True)
class FakeTurn:
    """Duck-typed like phq.models.Turn, so scoring tests need no pydantic."""

    session_id: str
    ts: datetime
    turn: int
    role: str
    text: str


def make_window(n_sessions: int = 3, turns_per_session: int = 4, words: int = 6, start: datetime = T0, tag: str = "") -> list[FakeTurn]:
    """A window of `n_sessions` daily sessions of alternating user/assistant turns, oldest first."""
    turns = []
    for s in range(n_sessions):
        for k in range(turns_per_session):
            phrase = _PHRASES[(s * turns_per_session + k) % len(_PHRASES)]
            text = " ".join([f"{tag}{s}.{k}", *([phrase] * max(1, words // 4))])
            ts = start + timedelta(days=s, minutes=k)
            turns.append(FakeTurn(f"{tag}s{s}", ts, k, "user" if k % 2 == 0 else "assistant", text))
    return turns


def build_tiny_bert(out_dir, seed: int = 0):
    """A 2-layer random-initialised BERT regressor with a local WordPiece tokenizer (encoder tests)."""
    import torch
    from tokenizers import (
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    from scoring.model import _TOKENIZER_CORPUS, ModelMeta, Template, save_model_dir

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(_TOKENIZER_CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=512, num_labels=1, problem_type="regression", pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    meta = ModelMeta(model_version=f"test-bert-{seed}", backbone="encoder", token_budget=512, template=Template(kind="plain"), target_mean=9.0, target_std=6.0)
    return save_model_dir(out_dir, model, tokenizer, meta)
