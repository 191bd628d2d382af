"""`ensure_model`: the demo reuses the newest trained model and never mistakes scoring's untrained stand-in for one."""

import os

from scoring.model import ModelMeta, META_FILE
from training.demo_model import ensure_model, newest_trained


def fake_model_dir(root, name, version, mtime):
    d = root / name
    d.mkdir(parents=True)
    (d / META_FILE).write_text(ModelMeta(model_version=version, backbone="encoder", token_budget=256).to_json())
    os.utime(d / META_FILE, ns=(mtime, mtime))
    return d


def test_the_newest_trained_model_is_reused_without_training(tmp_path):
    fake_model_dir(tmp_path, "a", "demo-a", 1_000_000_000)
    b = fake_model_dir(tmp_path, "b", "demo-b", 2_000_000_000)
    fake_model_dir(tmp_path, "untrained", "untrained-qwen3-tiny-abc", 3_000_000_000)
    assert newest_trained(tmp_path) == b
    assert ensure_model(str(tmp_path)) == b


def test_an_empty_or_missing_model_dir_has_no_trained_model(tmp_path):
    assert newest_trained(tmp_path / "missing") is None
    fake_model_dir(tmp_path, "u", "untrained-x", 1)
    assert newest_trained(tmp_path) is None
