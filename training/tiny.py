"""Tiny random-initialised backbones built from configs, with a tokenizer trained here on the
synthetic phrase banks: what training tests run on (seconds, no download). Not for real use.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus() -> list[str]:
    from training import phrases

    return phrases.all_phrases() + [
        "User: Assistant: session of Monday Tuesday Wednesday Thursday Friday Saturday Sunday UTC 0123456789 : - [ ]"]


def build_tokenizer(kind: str = "encoder", vocab_size: int = 600):
    """A WordPiece (encoder: [CLS] ... [SEP]) or byte-level BPE (decoder, with a chat template) tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind == "encoder":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                                    show_progress=False))
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                          show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=specials[1:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tiny_base(out_dir: str | Path, kind: str = "encoder", seed: int = 0, hidden: int = 32, layers: int = 2,
                   head_dim: int = 16) -> Path:
    """A random-initialised BERT (encoder) or Qwen3 (decoder) regressor and its tokenizer, saved as a base model
    (vLLM's CPU attention wants a decoder `head_dim` of at least 64)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Qwen3Config, Qwen3ForSequenceClassification

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(kind)
    torch.manual_seed(seed)
    if kind == "encoder":
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                            intermediate_size=2 * hidden, max_position_embeddings=1024, num_labels=1,
                            pad_token_id=tokenizer.pad_token_id)
        model = BertForSequenceClassification(config)
    else:
        config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                             num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=head_dim,
                             max_position_embeddings=2048, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
        model = Qwen3ForSequenceClassification(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
