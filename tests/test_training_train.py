"""`phq train` on tiny random-initialised backbones: run directory, model format, resume, LoRA, provenance weights."""

import csv
import json
from datetime import datetime, timezone

import pytest

from training import synth, tiny
from training.data import labelled_examples, read_labels, read_transcripts, split_users
from training.train import predict, train

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAST = dict(epochs=2, batch_size=8, lr=1e-3, head_lr=1e-3, token_budget=128, quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    events, labels = synth.generate(24, seed=5, start=START, label_fraction=1.0)
    synth.write_events(events, d / "events.jsonl")
    synth.write_labels(labels, d / "labels.csv")
    turns, _ = read_transcripts(d / "events.jsonl")
    examples, _ = labelled_examples(turns, read_labels(d / "labels.csv"))
    split = split_users([e.user_id for e in examples], 0, 0.2, 0.0)
    return dict(dir=d, train=[e for e in examples if e.user_id in split["train"]],
                val=[e for e in examples if e.user_id in split["val"]],
                encoder=tiny.save_tiny_base(d / "enc", "encoder"), decoder=tiny.save_tiny_base(d / "dec", "decoder"))


def test_a_run_writes_config_metrics_and_a_loadable_model_directory(data, tmp_path):
    from scoring.model import load_model_dir

    r = train({**FAST, "base_model": str(data["encoder"]), "model_dir": str(tmp_path / "models")},
              data["train"], data["val"], tmp_path / "run", log=lambda _: None)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backbone"] == "encoder"
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all("val_mae" in h for h in history)
    loaded = load_model_dir(r["installed_path"])
    assert loaded.meta.model_version == r["model_version"] and loaded.meta.data_fingerprint.startswith("sha256:")
    assert loaded.meta.token_budget == 128
    direct = predict(r["model"], r["tokenizer"], r["meta"], data["val"])
    assert predict(loaded.model, loaded.tokenizer, loaded.meta, data["val"]) == pytest.approx(direct, abs=1e-4)
    assert all(0 <= p <= 27 for p in direct)


def test_serving_scores_a_trained_model_as_training_predicted(data, tmp_path):
    from scoring.engine import Scorer

    r = train({**FAST, "epochs": 1, "base_model": str(data["encoder"]), "install": False},
              data["train"], data["val"], tmp_path / "run", log=lambda _: None)
    scorer = Scorer.load(r["model_path"], "transformers")
    served = [s.score for s in scorer.score([ex.turns for ex in data["val"]])]
    scorer.close()
    assert served == pytest.approx(predict(r["model"], r["tokenizer"], r["meta"], data["val"]), abs=1e-3)


def test_an_interrupted_run_resumes_after_its_last_epoch(data, tmp_path):
    cfg = {**FAST, "epochs": 3, "patience": 5, "base_model": str(data["encoder"]), "install": False}

    def stop_in_epoch_two(msg):
        if msg.startswith("epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data["train"], data["val"], tmp_path / "run", log=stop_in_epoch_two)
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    logs = []
    r = train(cfg, data["train"], data["val"], tmp_path / "run", log=logs.append)
    assert any(m.startswith("resumed") for m in logs)
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3] and r["history"][0] == first[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_decoder_trains_with_lora_and_saves_a_merged_model(data, tmp_path):
    from scoring.model import load_model_dir

    r = train({**FAST, "epochs": 1, "base_model": str(data["decoder"]), "install": False},
              data["train"], data["val"], tmp_path / "run", log=lambda _: None)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["backbone"] == "decoder" and cfg["lora"] is True
    loaded = load_model_dir(r["model_path"])
    assert loaded.meta.template.kind == "chat"
    assert not any("lora" in n for n, _ in loaded.model.named_parameters())


def test_early_stopping_ends_a_run_that_stops_improving(data, tmp_path):
    r = train({**FAST, "epochs": 6, "patience": 1, "lr": 0.0, "head_lr": 0.0, "base_model": str(data["encoder"]),
               "install": False}, data["train"], data["val"], tmp_path / "run", log=lambda _: None)
    assert r["stop_reason"] == "early stopping" and r["epochs_run"] == 2


def test_provenance_weights_scale_each_examples_share_of_the_loss():
    import torch

    from training.train import CONFIG, provenance_weight, weighted_loss

    mse = torch.nn.MSELoss(reduction="none")
    out, y = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 9.0])
    w = torch.tensor([provenance_weight({"gt": 1.0, "teacher": 0.0}, p) for p in ("gt", "gt", "teacher")])
    assert weighted_loss(mse, out, y, w).item() == pytest.approx((1 + 4) / 2)
    assert provenance_weight(CONFIG["provenance_weights"], "student_round_3") == CONFIG["provenance_weights"]["student"]


def test_the_command_trains_and_evaluates_its_test_users(data, tmp_path, capsys):
    from training.train import main

    rc = main(["--events", str(data["dir"] / "events.jsonl"), "--labels", str(data["dir"] / "labels.csv"),
               "--base-model", str(data["encoder"]), "--run-dir", str(tmp_path / "run"),
               "--set", "epochs=1", "--set", "token_budget=128", "--set", f"model_dir=\"{tmp_path / 'models'}\""])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "eval" / "metrics.json").exists()
    assert (tmp_path / "run" / "test_predictions.csv").exists()
    (model,) = list((tmp_path / "models").iterdir())
    from training.evaluate import main as eval_main

    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    labels = read_labels(data["dir"] / "labels.csv")
    assert splits["test"] == sorted({lab.user_id for lab in labels if lab.split == "test"})  # the data's own split
    baselines = json.loads((tmp_path / "run" / "baselines.json").read_text())
    assert {"training_mean", "length_only", "tfidf_ridge"} < set(baselines) and len(baselines) == 4
    args = ["--model", str(model), "--events", str(data["dir"] / "events.jsonl"), "--out", str(tmp_path / "ev"),
            "--bootstrap", "50"]
    test_only = tmp_path / "test_labels.csv"
    synth.write_labels([r for r in csv.DictReader(open(data["dir"] / "labels.csv")) if r["split"] == "test"], test_only)
    assert eval_main(args + ["--labels", str(test_only)]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] > 0 and metrics["training_users"] == 0


def test_eval_refuses_a_model_on_its_own_training_users_unless_told_to_flag_them(data, tmp_path, capsys):
    from training.evaluate import main as eval_main

    r = train({**FAST, "epochs": 1, "base_model": str(data["encoder"]), "install": False},
              data["train"], data["val"], tmp_path / "run", log=lambda _: None)
    args = ["--model", r["model_path"], "--events", str(data["dir"] / "events.jsonl"),
            "--labels", str(data["dir"] / "labels.csv"), "--out", str(tmp_path / "ev"), "--bootstrap", "20"]
    assert eval_main(args) == 1 and "trained or selected this model" in capsys.readouterr().err
    assert eval_main(args + ["--allow-training-users"]) == 0
    trained_on = {e.user_id for e in data["train"] + data["val"]}
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["training_users"] == len(trained_on)
    flagged = {r["user_id"] for r in csv.DictReader(open(tmp_path / "ev" / "predictions.csv")) if r["in_training"] == "True"}
    assert flagged == trained_on


def test_a_time_limit_ends_the_run_inside_an_epoch_and_keeps_a_model(data, tmp_path):
    r = train({**FAST, "epochs": 5, "max_minutes": 1e-6, "base_model": str(data["encoder"]), "install": False},
              data["train"], data["val"], tmp_path / "run", log=lambda _: None)
    assert r["stop_reason"] == "time limit" and r["epochs_run"] == 1
    assert (tmp_path / "run" / "model" / "phq.json").exists()
