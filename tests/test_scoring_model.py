"""The model directory format: save, load, target scaling, picking one, importing light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from scoring.backends import TransformersBackend, make_backend
from scoring.engine import Scorer
from scoring.model import (
    ModelMeta,
    build_tokenizer,
    build_untrained,
    read_meta,
    resolve_model_path,
    save_model_dir,
)
from scoring.testing import build_tiny_bert, make_window


def test_scoring_imports_without_settings_kafka_database_or_pydantic():
    code = (
        "import sys\n"
        "for name in ('pydantic', 'pydantic_settings', 'sqlalchemy', 'confluent_kafka', 'faust', 'phq'):\n"
        "    sys.modules[name] = None\n"
        "import scoring.model, scoring.render, scoring.batcher, scoring.backends\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_saved_directory_loads_and_scores_the_same(tmp_path):
    src = build_untrained(tmp_path / "a")
    first = Scorer.load(src, backend="transformers")
    copy = save_model_dir(tmp_path / "b", first.backend.model, first.tokenizer, read_meta(src))
    again = Scorer.load(copy, backend="transformers")
    window = [make_window(2, 3)]
    assert again.score(window)[0].raw == pytest.approx(first.score(window)[0].raw, abs=1e-6)
    assert json.loads((copy / "phq.json").read_text())["model_version"] == first.model_version


def test_target_scaling_maps_raw_outputs_to_points_and_back():
    meta = ModelMeta(model_version="m", backbone="decoder", token_budget=10, target_mean=8.0, target_std=5.0)
    assert meta.to_points(1.0) == 13.0 and meta.to_raw(13.0) == 1.0


def test_phq_json_of_another_format_version_is_refused(tmp_path):
    path = build_untrained(tmp_path / "m")
    meta = json.loads((path / "phq.json").read_text())
    (path / "phq.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        read_meta(path)


def test_model_path_without_phq_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="PHQ_MODEL_PATH"):
        resolve_model_path(str(tmp_path), str(tmp_path))
    assert resolve_model_path(str(tmp_path / "absent"), "") is None


def test_an_encoder_directory_scores_through_the_same_interface(tmp_path):
    scorer = Scorer.load(build_tiny_bert(tmp_path / "bert"), backend="auto")
    assert scorer.backend.name == "transformers"
    out = scorer.score([make_window(2, 2), make_window(40, 4, words=20)])
    assert all(0 <= o.score <= 27 for o in out)
    assert out[1].n_tokens == 512 and out[1].truncated


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="PHQ_BACKEND"):
        make_backend("onnx", build_untrained(tmp_path / "m"))


def test_qwen3_5_regressor_runs_mask_free_like_its_masked_forward(tmp_path):
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Qwen3_5TextConfig"):
        pytest.skip("this transformers has no qwen3_5")
    from transformers import AutoModelForSequenceClassification, Qwen3_5TextConfig

    tokenizer = build_tokenizer()
    config = Qwen3_5TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=16,
        linear_value_head_dim=16, layer_types=["linear_attention", "full_attention"], num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    path = save_model_dir(tmp_path / "q35", model, tokenizer, ModelMeta("q35", "decoder", 1024))
    backend = TransformersBackend(path)
    assert backend.mask_free
    rows = [r.input_ids for r in Scorer(backend).render([make_window(1, 2), make_window(3, 3)])]
    width = max(map(len, rows))
    ids = torch.tensor([r + [backend.pad_id] * (width - len(r)) for r in rows])
    with torch.inference_mode():
        reference = backend.model(input_ids=ids, attention_mask=(ids != backend.pad_id).long()).logits[:, 0].tolist()
    assert backend.forward(rows) == pytest.approx(reference, abs=1e-5)


def test_init_regressor_puts_a_fresh_head_on_a_local_backbone(tmp_path):
    from scoring.model import init_regressor

    path = init_regressor(build_tiny_bert(tmp_path / "base"), tmp_path / "reg", model_version="bert-reg", token_budget=256,
                          target_mean=9.0, target_std=6.0)
    meta = read_meta(path)
    assert (meta.backbone, meta.token_budget, meta.template.kind) == ("encoder", 256, "plain")
    out = Scorer.load(path, backend="transformers").score([make_window(2, 2)])[0]
    assert 0 <= out.score <= 27 and out.n_tokens <= 256
