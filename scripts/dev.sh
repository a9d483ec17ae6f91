#!/usr/bin/env bash
# Developer entry point: `scripts/dev.sh demo`, `scripts/dev.sh replay` or `scripts/dev.sh test`.
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

ensure_system_packages() {
    # mosquitto: the tests' and the demo's broker; dbus-daemon: the private bus the fake
    # BlueZ runs on; systemd: systemd-analyze checks the unit's hardening.
    local missing=()
    { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)
    if [ "$1" = test ]; then
        command -v dbus-daemon >/dev/null || missing+=(dbus-daemon)
        command -v systemd-analyze >/dev/null || missing+=(systemd)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "dev.sh: missing system packages: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

demo() {
    # A simulated ankle band -> clonusd -> a private Mosquitto on a free port -> the monitor.
    # Not local: the EXIT trap needs them after this function returns.
    work=$(mktemp -d)
    port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$work/mosquitto.conf"
    "$mosq" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
    mosq_pid=$!
    sed -e "s/^port = 1883/port = $port/" -e "s#^state_dir = .*#state_dir = \"$work/state\"#" \
        config/demo.toml >"$work/demo.toml"
    "$VENV/bin/clonusd" run --config "$work/demo.toml" 2>"$work/daemon.log" &
    daemon_pid=$!
    trap 'kill $daemon_pid 2>/dev/null; wait $daemon_pid 2>/dev/null; kill $mosq_pid 2>/dev/null; rm -rf "$work"' EXIT
    echo "demo: simulated ankle band (synthetic signal, not a patient) -> clonusd -> mosquitto :$port" >&2
    echo "demo: daemon log in $work/daemon.log; Ctrl-C to stop (ends by itself after ${DEMO_SECONDS:-60} s)" >&2
    "$VENV/bin/clonusd" monitor --broker "127.0.0.1:$port" --duration "${DEMO_SECONDS:-60}"
}

case "${1:-}" in
    demo)
        ensure_venv test
        ensure_system_packages demo
        demo
        ;;
    replay)
        ensure_venv test
        echo "Replaying the shipped recording (synthetic data, not a patient):" >&2
        "$VENV/bin/clonusd" replay daemon/examples/ankle-imu6-demo.csv
        ;;
    test)
        ensure_venv dev
        ensure_system_packages test
        # mypy cannot follow the editable install's import hook: give it the installed
        # names (clonusd.daemon, clonusd.dsp) as links to the folders (pyproject: mypy_path).
        mkdir -p build/mypy-path/clonusd
        ln -sfn ../../../daemon build/mypy-path/clonusd/daemon
        ln -sfn ../../../dsp build/mypy-path/clonusd/dsp
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy"
        "$VENV/bin/python" -m pytest -q
        # The slow cases (pyproject marker `slow`, left out above): a 60 s network cut.
        "$VENV/bin/python" -m pytest -q -m slow
        ;;
    *)
        echo "usage: scripts/dev.sh demo|replay|test" >&2
        exit 2
        ;;
esac
