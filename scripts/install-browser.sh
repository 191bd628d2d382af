#!/usr/bin/env bash
# Installs what the dashboard's browser test needs: Debian's chromium and chromedriver, and the
# selenium Python bindings in the active environment. Idempotent: a no-op when all are present.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi

PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import selenium" >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q "selenium>=4.20,<5"
fi
echo "browser: $(chromium --version 2>/dev/null | head -1); $(chromedriver --version 2>/dev/null | head -1)"
