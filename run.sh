#!/usr/bin/env bash
# The project's entry points on a fresh machine: `./run.sh demo` (the main job) and `./run.sh test`.
# Both install what they need first: a JDK and Maven (for the Kafka jars), a virtual environment with
# the CPU build of torch from ../shared/wheels, the package and its test extras.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${PHQ_VENV:-$ROOT/.venv}
WHEELS=${PHQ_WHEELS:-$ROOT/../shared/wheels}

log() { echo "run.sh: $*" >&2; }

apt_install() {
  [ "$(id -u)" = 0 ] || { log "need root to apt-get install $*; install them and rerun"; exit 1; }
  if [ ! -f /var/lib/apt/lists/.phq-updated ]; then apt-get update -q >/dev/null && touch /var/lib/apt/lists/.phq-updated; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

setup_system() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
}

setup_python() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  local stamp="$VENV/.phq-installed-$(cat pyproject.toml scripts/*.sh 2>/dev/null | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing Python packages into $VENV"
    python -m pip install -q --upgrade pip
    if [ -d "$WHEELS" ]; then
      # the CPU build first, so nothing later pulls PyPI's multi-GB CUDA build
      python -m pip install -q --find-links "$WHEELS" "torch==2.13.0+cpu"
    fi
    python -m pip install -q --find-links "$WHEELS" -e ".[test,demo]"
    for script in scripts/install-*.sh; do [ -f "$script" ] && bash "$script"; done
    rm -f "$VENV"/.phq-installed-*
    touch "$stamp"
  fi
}

setup() { setup_system; setup_python; }

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup
    phq dev up
    phq migrate
    phq demo "$@"
    ;;
  test)
    setup
    phq dev up
    # fast suite first, then the crash, fault and scale-out tests as their own step
    rc=0
    python -m pytest -m "not slow" "$@" || rc=$?
    python -m pytest -m slow "$@" || { r=$?; [ "$r" = 5 ] || [ "$rc" != 0 ] || rc=$r; }
    exit "$rc"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: ./run.sh demo|test|setup [ARGS...]" >&2
    exit 2
    ;;
esac
