#!/usr/bin/env bash
# Developer entry point: `scripts/dev.sh demo`, `scripts/dev.sh replay`, `scripts/dev.sh test`
# or `scripts/dev.sh test-vm` (the real-BlueZ tier in a VM: root, minutes; tests/vm/README.md).
#
# On first use it installs what is missing and says so, step by step: Debian packages with
# apt-get (as root; `apt-get update` once, no Recommends), then .venv with the project in it
# (Debian's system Python refuses pip installs, PEP 668; a venv brings its own pip). Later
# calls skip every step whose inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

step() { printf 'dev.sh: %s\n' "$*" >&2; }

# -- Debian packages -----------------------------------------------------------------------

APT_UPDATED=
apt_install() {
    # apt_install WHY PACKAGE...: install the packages that are missing, saying why.
    local why=$1
    shift
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "dev.sh: missing $* ($why): sudo apt-get install --no-install-recommends $*" >&2
        exit 1
    fi
    if [ -z "$APT_UPDATED" ]; then
        step "apt-get update (once)"
        apt-get update -qq
        APT_UPDATED=1
    fi
    step "apt-get install $* -- $why"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }

ensure_system_packages() {
    local missing=()
    if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    have mosquitto || missing+=(mosquitto)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "a venv for the project, and the MQTT broker the demo and tests use" "${missing[@]}"
    fi
    if [ "$1" = test ]; then
        missing=()
        have dbus-daemon || missing+=(dbus-daemon)
        have systemd-analyze || missing+=(systemd)
        have openssl || missing+=(openssl)
        have chromium || missing+=(chromium)
        if [ ${#missing[@]} -gt 0 ]; then
            apt_install "the fake BlueZ's private bus, systemd-analyze for the unit, openssl for a test CA, and chromium for the central station's browser tests" "${missing[@]}"
        fi
    fi
}

ensure_vm_packages() {
    # The real-BlueZ tier: QEMU to boot the VM, and what build-image.sh makes its image with.
    local missing=()
    have qemu-system-x86_64 || missing+=(qemu-system-x86)
    have debootstrap || missing+=(debootstrap)
    have mke2fs || missing+=(e2fsprogs)
    have cpio || missing+=(cpio)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "the VM of the real-BlueZ tests and its image build" "${missing[@]}"
    fi
}

# -- the venv ----------------------------------------------------------------------------

ensure_venv() {
    # ensure_venv EXTRA: .venv with the project installed editable, with [EXTRA].
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating $VENV (python: $("$PY" --version 2>&1))"
        "$PY" -m venv "$VENV"
    fi
    # Reinstall only when what the install depends on changed: the project's metadata or
    # the version of the Python the venv was made from (code changes need no reinstall). [dev] includes [test], so either stamp serves test.
    local want
    want="$("$VENV/bin/python" --version 2>&1) $(sha256sum pyproject.toml | cut -c1-16)"
    if [ "$(cat "$VENV/.installed-$1" 2>/dev/null)" = "$want" ] ||
       { [ "$1" = test ] && [ "$(cat "$VENV/.installed-dev" 2>/dev/null)" = "$want" ]; }; then
        return
    fi
    local log="$VENV/install.log"
    step "installing the project and its Python dependencies ([$1]: numpy, scipy, pydantic,"
    step "  aiomqtt, bleak, ...) into $VENV; about a minute the first time; log: $log"
    # pip says nothing useful while it works: show that it still does, every 10 s.
    ( while sleep 10 && kill -0 $$ 2>/dev/null; do
          step "  ... still installing ($(grep -c '^Collecting\|^Requirement' "$log" || true) packages so far)"
      done ) &
    local ticker=$!
    if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
           "$VENV/bin/python" -m pip install -e ".[$1]"; } >"$log" 2>&1; then
        kill "$ticker" 2>/dev/null
        cat "$log" >&2
        echo "dev.sh: installing the project into $VENV failed (log above)" >&2
        exit 1
    fi
    kill "$ticker" 2>/dev/null
    echo "$want" >"$VENV/.installed-$1"
}

mypy_path() {
    # mypy cannot follow the editable install's import hook: give it the installed names
    # (clonusd.daemon, clonusd.dsp) as links to the folders (pyproject: mypy_path).
    mkdir -p build/mypy-path/clonusd
    ln -sfn ../../../daemon build/mypy-path/clonusd/daemon
    ln -sfn ../../../dsp build/mypy-path/clonusd/dsp
}

# -- the commands --------------------------------------------------------------------------

demo() {
    # A simulated ankle band -> clonusd -> a private Mosquitto on a free port -> the monitor.
    # Its files stay in build/demo (emptied at the next demo), so the log can be read after.
    # Not local: the EXIT trap needs them after this function returns.
    work=build/demo
    rm -rf "$work"
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$work/mosquitto.conf"
    step "starting a private Mosquitto on 127.0.0.1:$port"
    "$mosq" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
    mosq_pid=$!
    sed -e "s/^port = 1883/port = $port/" -e "s#^state_dir = .*#state_dir = \"$work/state\"#" \
        config/demo.toml >"$work/demo.toml"
    "$VENV/bin/clonusd" run --config "$work/demo.toml" 2>"$work/daemon.log" &
    daemon_pid=$!
    web_port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$VENV/bin/clonusd" web --broker "127.0.0.1:$port" --listen "127.0.0.1:$web_port" >"$work/web.log" 2>&1 &
    web_pid=$!
    trap 'kill $web_pid 2>/dev/null; kill $daemon_pid 2>/dev/null; wait $daemon_pid 2>/dev/null; kill $mosq_pid 2>/dev/null; echo "demo: the daemon log is kept in $work/daemon.log" >&2' EXIT
    echo "demo: central station (the page nurses see): http://127.0.0.1:$web_port/  (log $work/web.log)" >&2
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null; then
        xdg-open "http://127.0.0.1:$web_port/" >/dev/null 2>&1 || true
    fi
    echo "demo: simulated ankle band (synthetic signal, not a patient) -> clonusd -> mosquitto :$port" >&2
    echo "demo: episodes of 4, 18, 5 and 30 beats at 4, 10, 24 and 32 s (config/demo.toml)" >&2
    echo "demo: daemon log in $work/daemon.log; Ctrl-C to stop (ends by itself after ${DEMO_SECONDS:-60} s)" >&2
    "$VENV/bin/clonusd" monitor --broker "127.0.0.1:$port" --duration "${DEMO_SECONDS:-60}"
}

case "${1:-}" in
    demo)
        ensure_system_packages demo
        ensure_venv test
        demo
        ;;
    replay)
        ensure_system_packages replay
        ensure_venv test
        echo "Replaying the shipped recording (synthetic data, not a patient):" >&2
        "$VENV/bin/clonusd" replay daemon/examples/ankle-imu6-demo.csv
        ;;
    test)
        ensure_system_packages test
        ensure_venv dev
        mypy_path
        step "ruff"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        step "mypy (strict)"
        "$VENV/bin/mypy"
        step "pytest"
        "$VENV/bin/python" -m pytest -q
        # The slow cases (pyproject marker `slow`, left out above): a 60 s network cut.
        "$VENV/bin/python" -m pytest -q -m slow
        ;;
    test-vm)
        # Not part of `test`: it needs root and a few minutes (more the first time, when
        # the image is built into /var/cache/clonusd-vm).
        if [ "$(id -u)" != 0 ]; then
            echo "dev.sh: test-vm needs root (debootstrap, the image build)" >&2
            exit 1
        fi
        ensure_system_packages test
        ensure_vm_packages
        ensure_venv vm
        step "pytest -m vm (the real-BlueZ VM tier)"
        "$VENV/bin/python" -m pytest -m vm tests/vm -q
        ;;
    *)
        echo "usage: scripts/dev.sh demo|replay|test|test-vm" >&2
        exit 2
        ;;
esac
