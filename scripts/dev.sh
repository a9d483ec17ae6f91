#!/usr/bin/env bash
# Developer entry point: `scripts/dev.sh demo` or `scripts/dev.sh test`.
# Creates .venv on first use (Debian's system Python refuses pip installs, PEP 668) and
# installs the project into it; on a bare Debian machine it installs python3-venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
            else
                echo "dev.sh: python3-venv is missing: sudo apt-get install python3-venv" >&2
                exit 1
            fi
        fi
        "$PY" -m venv "$VENV"
    fi
    local log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
           "$VENV/bin/python" -m pip install -q -e ".[$1]"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "dev.sh: installing the project into $VENV failed (log above)" >&2
        exit 1
    fi
}

case "${1:-}" in
    demo)
        ensure_venv test
        echo "Replaying the shipped demo recording (synthetic data, not a patient):" >&2
        "$VENV/bin/clonusd" replay daemon/examples/ankle-imu6-demo.csv
        ;;
    test)
        ensure_venv dev
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy"
        "$VENV/bin/python" -m pytest -q
        ;;
    *)
        echo "usage: scripts/dev.sh demo|test" >&2
        exit 2
        ;;
esac
