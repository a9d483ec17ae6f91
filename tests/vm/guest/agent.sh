#!/bin/bash
# The guest half of the real-BlueZ test, run by vm-init once dbus and bluetoothd are up.
# The host drives it through the virtio serial port "ctl", one command a line, and it
# answers there; "hci" carries HCI to the host's virtual controllers (hci-relay.py), and
# "mqtt" carries what a subscriber on the guest's Mosquitto receives, one JSON a line.
# Files (wheel in, logs out) go through the 9p share /mnt/host.
set -u
SHARE=/mnt/host
port() {
    local d
    for d in /sys/class/virtio-ports/vport*; do
        [ "$(cat "$d/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return; }
    done
    echo "agent: no virtio port $1" >&2
    exit 1
}
CTL=$(port ctl) HCI=$(port hci) MQTT=$(port mqtt)
exec 3<>"$CTL"
say() { echo "$*" >&3; }
up() { cut -d' ' -f1 /proc/uptime; }

read -r _hello <&3
python3 -S "$SHARE/hci-relay.py" "$HCI" 2>"$SHARE/hci-relay.log" &
# The project as CI built it: its wheel, installed as a user installs it (meanwhile
# bluetoothd sets up hci0).
/opt/venv/bin/python -m installer "$SHARE"/wheel/*.whl >"$SHARE/install.log" 2>&1 &
installing=$!
powered() {
    dbus-send --system --print-reply --dest=org.bluez /org/bluez/hci0 \
        org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Powered 2>/dev/null |
        grep -q "boolean true"
}
for _ in $(seq 300); do
    powered && break
    dbus-send --system --dest=org.bluez /org/bluez/hci0 org.freedesktop.DBus.Properties.Set \
        string:org.bluez.Adapter1 string:Powered variant:boolean:true 2>/dev/null
    sleep 0.2
done
powered || { say "error: hci0 never powered (see bluetoothd.log)"; exit 1; }
wait "$installing" || { say "error installing the wheel: $(tail -1 "$SHARE/install.log")"; exit 1; }
say "ready $(up)"

daemon=
while read -r cmd arg <&3; do
    case $cmd in
        mqtt)
            printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n' >/tmp/mosquitto.conf
            mosquitto -c /tmp/mosquitto.conf >"$SHARE/mosquitto.log" 2>&1 &
            for _ in $(seq 100); do
                mosquitto_sub -h 127.0.0.1 -t probe -W 1 -C 1 -E 2>/dev/null && break
                sleep 0.1
            done
            # Line-buffered: the host waits on each message as it comes.
            stdbuf -oL mosquitto_sub -h 127.0.0.1 -q 1 -t 'clonusd/#' -F '%J' \
                >"$MQTT" 2>"$SHARE/mosquitto_sub.log" &
            say "mqtt $(up)"
            ;;
        scan)
            (clonusd scan --seconds "$arg" >"$SHARE/scan.out" 2>"$SHARE/scan.err"
             say "scanned $? $(up)") &
            ;;
        run)
            clonusd run --config "$SHARE/$arg" 2>"$SHARE/daemon.log" &
            daemon=$!
            say "running $(up)"
            ;;
        stop)
            kill -TERM "$daemon" 2>/dev/null
            wait "$daemon"
            say "stopped $? $(up)"
            ;;
        bye)
            say "bye"
            break
            ;;
        *)
            say "error: unknown command $cmd"
            ;;
    esac
done
