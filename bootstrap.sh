#!/usr/bin/env bash
# One entry point for a fresh Debian machine with Python 3.11:
#   ./bootstrap.sh demo   set up .venv, build a demo ledger, export it with json:raw, verify it
#   ./bootstrap.sh test   also install the real components the tests use, then run the whole suite
#   ./bootstrap.sh lint   ruff + mypy --strict
# Extra arguments after `test` go to pytest (e.g. ./bootstrap.sh test -m "not slow" -x).
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-demo}
shift || true

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
# Real components the tests drive (Trivy and friends come from PyPI via the test extra).
APT_PACKAGES=(zstd age docker-registry softhsm2 openssl tar golang-github-coreos-bbolt-dev rpm postgresql chromium jq strace curl)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    # "install ok installed" only: a removed package keeps a dpkg record ("deinstall ok config-files").
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    say "not root: please install ${missing[*]} (tests needing them are skipped locally, fail in CI)"
    return 0
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
}

# The ledger's row decoder is compiled at install (setup.py, stella/ledger/_rowcodec.pyx): it needs
# a C compiler and this Python's headers. Without them the install still works, reading more slowly.
build_tools() {
  command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev || say "no C compiler: the ledger is read by fastavro alone"
  local include
  include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$include/Python.h" ] || apt_install "$(basename "$PYTHON")-dev" \
    || say "no Python headers in $include: the ledger is read by fastavro alone"
}

make_venv() {
  build_tools
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $PYTHON"
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
      apt_install python3-venv
      rm -rf .venv
      "$PYTHON" -m venv .venv
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip </dev/null 2>&1 | grep -v "^WARNING: Location" || true
  say "pip install -e .$1"
  # setuptools prints a boxed "Editable installation" warning on every editable install: not news.
  .venv/bin/python -m pip install -q -e ".$1" </dev/null 2>&1 | grep -v "^WARNING: Location" \
    | sed '/BuildBackendWarning: Editable installation/,/with strategy, WheelFile/d' || true
  .venv/bin/python -c "import stella, apache_beam" 2>/dev/null || { say "installation failed"; exit 1; }
}

# Never let Google auth libraries probe the GCE metadata server (not ours to touch).
export NO_GCE_CHECK=true GCE_METADATA_HOST=127.0.0.1:1 GCE_METADATA_IP=127.0.0.1:1

case "$mode" in
  demo)
    make_venv ""
    say "stella demo (ledger: ${STELLA_HOME:-$HOME/.stella}/ledger, bundles: ./out)"
    exec .venv/bin/stella demo "$@"
    ;;
  test)
    apt_install "${APT_PACKAGES[@]}"
    make_venv "[test]"
    say "pytest (all suites; CI=${CI:-unset})"
    exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
    ;;
  lint)
    make_venv "[test]"
    .venv/bin/ruff format --check .
    .venv/bin/ruff check .
    exec .venv/bin/mypy
    ;;
  *)
    echo "usage: $0 demo|test|lint [args]" >&2
    exit 2
    ;;
esac
