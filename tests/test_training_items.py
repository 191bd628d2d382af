"""`phq train` on the item model: starts from the cold-start model, fits its heads on labels, writes an
ordinary item-model directory with a calibration, prints the cold-start and trained figures on held-out
users and on real text, and installs only a model that reads real text at least as well."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training import train_items
from training.realtext import default_data_dir


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    subprocess.run([sys.executable, "-m", "phq.cli", "synth", "--users", "90", "--seed", "4", "--out-events",
                    str(out / "events.jsonl"), "--out-labels", str(out / "labels.csv")], check=True, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def small_realtext(tmp_path_factory):
    """A few held-out rows of each real set (the split rule keeps them held out), to keep the test short."""
    out = tmp_path_factory.mktemp("realtext")
    src = default_data_dir()
    for folder, name, id_col, keep in (("counsel-chat", "questions.csv", "questionID", 60), ("sad", "sad_v1.csv", "sID", 90)):
        (out / folder).mkdir()
        with open(src / folder / name, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if int(r[id_col]) % 3 == 0]
            fields = reader.fieldnames
        if folder == "counsel-chat":  # both classes present
            rows = [r for r in rows if r["topic"] == "depression"][:20] + [r for r in rows if r["topic"] != "depression"][:keep - 20]
        with open(out / folder / name, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows[:keep])
    return out


def test_trains_the_item_heads_and_reports_both_models(synth_data, small_realtext, tmp_path, capsys):
    cfg = dict(train_items.CONFIG, steps=40, quiet=True, realtext_data=str(small_realtext), realtext_boot=20,
               model_dir=str(tmp_path / "installed"))
    report = train_items.run(str(synth_data / "events.jsonl"), [str(synth_data / "labels.csv")], tmp_path / "run", cfg)
    out = capsys.readouterr().out
    assert "cold start" in out and "trained" in out and "real text" in out

    from scoring.model import read_meta

    meta = read_meta(tmp_path / "run" / "model")
    assert meta.kind == "items" and meta.model_version == report["model_version"]
    assert meta.base_model.startswith("coldstart-") and meta.data_fingerprint.startswith("sha256:")
    assert meta.calibration and meta.calibration["q"] > 0 and meta.calibration["change_bound"] > 0
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert not set(splits["train"]) & set(splits["test"])
    history = report["train"]["history"]
    best = next(h for h in history if h["step"] == report["train"]["best_step"])
    assert best["step"] == 0 or best["reads_real_text_as_well"], "only steps that still read real text are kept"
    rt = report["realtext"]
    assert rt["trained"]["model"]["counselchat_depression"]["auc"] is not None
    installed = report["installed"]
    better = train_items.at_least_as_good_report(report)
    assert (installed is not None) == better
    if installed:
        assert (Path(installed) / "phq.json").is_file()


def test_a_model_that_reads_real_text_worse_is_not_installed(tmp_path):
    def result(auc, rho):
        return {"model": {"counselchat_depression": {"auc": auc}, "sad_severity": {"spearman": rho}}}

    report = {"model_version": "items-x", "realtext": {"trained": result(0.90, 0.16), "base": result(0.91, 0.15)}}
    cfg = dict(train_items.CONFIG, model_dir=str(tmp_path))
    assert train_items.install_if_better(tmp_path / "model", report, cfg, None) is None
    report["realtext"]["trained"] = result(0.91, 0.15)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "phq.json").write_text("{}")
    assert train_items.install_if_better(tmp_path / "model", report, cfg, None) == tmp_path / "items-x"


def test_without_the_real_text_checks_nothing_is_installed(tmp_path):
    cfg = dict(train_items.CONFIG, model_dir=str(tmp_path))
    assert train_items.install_if_better(tmp_path, {"model_version": "m", "realtext": None}, cfg, None) is None
