"""The metric suite agrees with scikit-learn and SciPy on random inputs, and `phq eval` writes the contract's files."""

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score, roc_curve

from training import evaluate, metrics as M


def random_case(seed: int, n: int = 80):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 28, n).astype(float)
    p = np.round(y + rng.normal(0, 5, n), 1)  # rounding makes ties, which AUC and ranks must handle
    users = np.array([f"u{k}" for k in rng.integers(0, n // 2, n)])
    return users, y, p


@pytest.mark.parametrize("seed", range(5))
def test_mae_and_rmse_match_sklearn(seed):
    _, y, p = random_case(seed)
    assert M.mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    assert M.rmse(y, p) == pytest.approx(np.sqrt(mean_squared_error(y, p)))


@pytest.mark.parametrize("seed", range(5))
def test_pearson_and_spearman_match_scipy(seed):
    _, y, p = random_case(seed)
    assert M.pearson(y, p) == pytest.approx(stats.pearsonr(y, p)[0])
    assert M.spearman(y, p) == pytest.approx(stats.spearmanr(y, p)[0])


@pytest.mark.parametrize("seed", range(5))
def test_ranks_match_scipy_rankdata_with_ties(seed):
    x = np.random.default_rng(seed).integers(0, 10, 50)
    assert np.allclose(M.ranks(x), stats.rankdata(x))


@pytest.mark.parametrize("seed", range(5))
def test_auc_at_every_threshold_matches_sklearn(seed):
    _, y, p = random_case(seed)
    m = M.point_metrics(y, p)
    for t in M.THRESHOLDS:
        pos = y >= t
        expected = roc_auc_score(pos, p) if 0 < pos.sum() < len(y) else None
        got = m["auc_by_threshold"][str(t)]
        assert (got is None and expected is None) or got == pytest.approx(expected)
    assert m["auc_10"] == pytest.approx(roc_auc_score(y >= 10, p))


def test_roc_curve_matches_sklearn():
    _, y, p = random_case(11)
    fpr, tpr = M.roc_curve(y >= 10, p)
    sk_fpr, sk_tpr, _ = roc_curve(y >= 10, p, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)


def test_auc_is_null_with_counts_when_a_class_is_empty():
    y = np.array([1.0, 2, 3, 4, 8, 9])
    m = M.all_metrics(np.array(list("abcdef")), y, y + 0.5, n_boot=50)
    assert m["auc_by_threshold"]["10"] is None and m["auc_10"] is None
    assert m["counts"]["by_threshold"]["10"] == {"positive": 0, "negative": 6}
    assert m["ci95"]["auc_by_threshold"]["10"] is None


def test_bootstrap_resamples_users_not_rows_and_covers_the_point_estimate():
    users, y, p = random_case(3, n=200)
    m = M.all_metrics(users, y, p, n_boot=300, seed=1)
    for k in ("mae", "rmse", "pearson_r", "auc_10"):
        lo, hi = m["ci95"][k]
        assert lo <= m[k] <= hi
    # one user with all rows: every replicate is the same sample, so the interval collapses
    one = M.bootstrap_ci(np.array(["u"] * 50), y[:50], p[:50], n_boot=20)
    assert one["mae"][0] == pytest.approx(one["mae"][1])


def test_error_by_band_and_calibration_partition_the_rows():
    _, y, p = random_case(4, n=100)
    bands = M.error_by_band(y, p)
    assert sum(b["n"] for b in bands.values()) == 100
    assert bands["severe"]["mae"] == pytest.approx(M.mae(y[y >= 20], p[y >= 20]))
    cal = M.calibration(y, p)
    assert len(cal) == 10 and sum(c["n"] for c in cal) == 100
    assert [c["mean_pred"] for c in cal] == sorted(c["mean_pred"] for c in cal)


def test_phq_eval_writes_metrics_json_plots_and_report(tmp_path):
    users, y, p = random_case(5)
    csv_path = tmp_path / "pred.csv"
    evaluate.write_predictions(csv_path, users, y, p)
    assert evaluate.main([str(csv_path), "--out", str(tmp_path / "out"), "--bootstrap", "100"]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for k in ("n", "mae", "rmse", "pearson_r", "spearman_rho", "auc_10"):
        assert isinstance(m[k], (int, float))
    assert set(m["auc_by_threshold"]) == {str(t) for t in range(3, 25)}
    assert "ci95" in m and "counts" in m
    for name in ("scatter.png", "roc.png", "auc_by_threshold.png", "calibration.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
    assert "![ROC curves](roc.png)" in (tmp_path / "out" / "report.md").read_text()


def test_phq_eval_says_what_is_wrong_with_a_bad_csv(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,truth,pred\na,1,2\n")
    assert evaluate.main([str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "missing column" in capsys.readouterr().err
