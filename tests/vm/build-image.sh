#!/usr/bin/env bash
# Build (or find in the cache) the VM image for the real-BlueZ test tier:
# a Debian bookworm rootfs (BlueZ 5.66 and Python 3.11, as on Raspberry Pi OS) with dbus,
# bluez, mosquitto and a venv holding clonusd's dependencies, booted by QEMU as
#   vmlinux (the kernel's ELF, booted through PVH) + a tiny busybox initrd + rootfs.img.
# The project itself is not in the image: the test installs its wheel at boot.
#
#   tests/vm/build-image.sh REQUIREMENTS_FILE      prints the image directory on stdout
#
# Cache: $CLONUSD_VM_CACHE (default /var/cache/clonusd-vm), outside any checkout so a fresh
# clone on the same machine reuses it. Layers, each keyed by what goes into it:
#   debs/            downloaded .debs (debootstrap --cache-dir)
#   pip/             pip's download cache
#   base-<key>/      the debootstrapped rootfs (key: suite + package list + this script)
#   image-<key>/     the bootable image (key: base key + requirements + guest init)
# Only the newest base and image are kept. Cold: ~3-5 min on 2 shared cores; warm: instant.
# Needs root, debootstrap, mke2fs (e2fsprogs), cpio, and Debian's and PyPI's servers.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REQS=${1:?usage: build-image.sh REQUIREMENTS_FILE}
CACHE=${CLONUSD_VM_CACHE:-/var/cache/clonusd-vm}
SUITE=${CLONUSD_VM_SUITE:-bookworm}
MIRROR=${CLONUSD_VM_MIRROR:-http://deb.debian.org/debian}
PACKAGES=dbus,bluez,mosquitto,mosquitto-clients,python3,python3-venv,linux-image-amd64,kmod,busybox-static,ca-certificates

log() { echo "build-image: $*" >&2; }
key() { sha256sum | cut -c1-16; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, and reading the rootfs for mke2fs)"; exit 1; }
for tool in debootstrap mke2fs cpio; do
    command -v "$tool" >/dev/null || { log "missing $tool: apt-get install debootstrap e2fsprogs cpio"; exit 1; }
done
mkdir -p "$CACHE/debs" "$CACHE/pip"
exec 9>"$CACHE/.lock"
flock 9  # one build at a time; a second caller waits and then finds the image

base_key=$( { echo "$SUITE $MIRROR $PACKAGES"; sed -n '/^# base layer/,/^# end base layer/p' "$0"; } | key)
image_key=$( { echo "$base_key"; cat "$REQS" "$HERE/guest/vm-init" "$HERE/guest/initrd-init" \
    "$HERE/extract-vmlinux.py"; sed -n '/^# image layer/,$p' "$0"; } | key)
BASE=$CACHE/base-$base_key
IMAGE=$CACHE/image-$image_key
if [ -f "$IMAGE/done" ]; then
    echo "$IMAGE"
    exit 0
fi
unmount_under() {
    # A build killed in the chroot step leaves its bind mounts (/dev!) behind: unmount
    # them before anything below is removed.
    findmnt -rn -o TARGET | grep "^$1/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
discard() {
    unmount_under "$1"
    rm -rf --one-file-system "$1"
}

# base layer
if [ ! -f "$BASE/done" ]; then
    log "debootstrap $SUITE into $BASE (about 2-3 minutes; .debs cached in $CACHE/debs)"
    discard "$BASE.tmp"
    rm -rf "$BASE"
    nice debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE/debs" \
        "$SUITE" "$BASE.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -30 "$CACHE/debootstrap.log" >&2; log "debootstrap failed (log above)"; exit 1; }
    chroot "$BASE.tmp" apt-get clean
    mv "$BASE.tmp" "$BASE"
    touch "$BASE/done"
fi
# end base layer

# image layer
log "image $IMAGE: venv with $(grep -c . "$REQS") requirements"
discard "$IMAGE.tmp"
mkdir -p "$IMAGE.tmp"
ROOT=$IMAGE.tmp/rootfs
nice cp -a "$BASE" "$ROOT"
rm -f "$ROOT/done"
cp "$REQS" "$ROOT/tmp/requirements.txt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# A TLS-intercepting proxy's CA is in the host's bundle; pip in the chroot needs it too.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/tmp/ca.crt"
mkdir -p "$ROOT/tmp/pip-cache"
cleanup() { unmount_under "$ROOT"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
mount --bind "$CACHE/pip" "$ROOT/tmp/pip-cache"
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
# A clean environment: the host's PIP_*/SSL_* variables name host paths.
pip_env=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PIP_CACHE_DIR=/tmp/pip-cache
    PIP_CERT=/tmp/ca.crt SSL_CERT_FILE=/tmp/ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1)
for var in PIP_INDEX_URL PIP_DEFAULT_TIMEOUT HTTP_PROXY HTTPS_PROXY http_proxy https_proxy; do
    [ -n "${!var:-}" ] && pip_env+=("$var=${!var}")
done
if ! nice env -i "${pip_env[@]}" chroot "$ROOT" /bin/sh -c '
        python3 -m venv /opt/venv &&
        /opt/venv/bin/pip install -q -r /tmp/requirements.txt' >"$IMAGE.tmp/pip.log" 2>&1; then
    cat "$IMAGE.tmp/pip.log" >&2
    log "pip install in the chroot failed (log above)"
    exit 1
fi
cleanup
trap - EXIT
rm -rf "$ROOT/tmp/"* "$ROOT/etc/resolv.conf" "$ROOT/var/cache/apt/"*.bin
# No systemd in the guest: the init script starts what the tests need.
install -m 0755 "$HERE/guest/vm-init" "$ROOT/sbin/vm-init"
echo clonusd-vm >"$ROOT/etc/hostname"
: >"$ROOT/etc/machine-id"

KVER=$(basename "$(ls -d "$ROOT"/lib/modules/* | head -1)")
# The kernel's payload as an ELF: QEMU boots it through PVH and skips ~5 s of in-guest
# decompression under TCG.
python3 "$HERE/extract-vmlinux.py" "$ROOT/boot/vmlinuz-$KVER" "$IMAGE.tmp/vmlinux"

# A tiny initrd (busybox + the modules to mount an ext4 virtio disk): Debian's own
# initramfs costs ~20 s under TCG.
INITRD=$IMAGE.tmp/initrd
mkdir -p "$INITRD/bin" "$INITRD/lib/modules" "$INITRD/dev" "$INITRD/proc" "$INITRD/sys" "$INITRD/newroot"
cp "$ROOT/bin/busybox" "$INITRD/bin/busybox"
install -m 0755 "$HERE/guest/initrd-init" "$INITRD/init"
: >"$INITRD/modules"
for m in virtio_pci virtio_blk ext4; do
    chroot "$ROOT" modprobe -S "$KVER" --show-depends "$m" | while read -r kind path _; do
        [ "$kind" = insmod ] || continue
        name=$(basename "$path")
        case "$name" in
            *.xz) xz -dc "$ROOT$path" >"$INITRD/lib/modules/${name%.xz}"; name=${name%.xz} ;;
            *.zst) zstd -qdc "$ROOT$path" >"$INITRD/lib/modules/${name%.zst}"; name=${name%.zst} ;;
            *) cp "$ROOT$path" "$INITRD/lib/modules/$name" ;;
        esac
        grep -qx "$name" "$INITRD/modules" || echo "$name" >>"$INITRD/modules"
    done
done
(cd "$INITRD" && find . | cpio -o -H newc --quiet) >"$IMAGE.tmp/initrd.img"
rm -rf "$INITRD"

# Only the modules the guest loads are kept (the rest is most of the image otherwise).
keep=$IMAGE.tmp/keep-modules
# algif_*: bluetoothd's crypto (its static address, SMP) goes through AF_ALG sockets.
for m in virtio_pci virtio_blk ext4 9p 9pnet_virtio virtio_console bluetooth hci_vhci \
    algif_hash algif_skcipher cmac ecb aes_generic ecdh_generic; do
    chroot "$ROOT" modprobe -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | sort -u >"$keep"
find "$ROOT/lib/modules/$KVER/kernel" -type f | sed "s#^$ROOT##" | sort | comm -23 - "$keep" |
    sed "s#^#$ROOT#" | xargs -r rm -f
chroot "$ROOT" depmod "$KVER"
rm -rf "$ROOT/boot/"* "$ROOT/usr/share/doc" "$ROOT/usr/share/man" "$ROOT/usr/share/locale"

# mke2fs -d builds the filesystem from the directory: no loop device or mount needed.
size_mb=$(( $(du -sm "$ROOT" | cut -f1) + 300 ))
nice mke2fs -q -t ext4 -L clonusd-vm -d "$ROOT" "$IMAGE.tmp/rootfs.img" "${size_mb}M"
rm -rf "$ROOT"
touch "$IMAGE.tmp/done"
rm -rf "$IMAGE"
mv "$IMAGE.tmp" "$IMAGE"
# Older layers are only dead weight once these exist.
find "$CACHE" -maxdepth 1 \( -name 'image-*' ! -name "image-$image_key" \) -o \
    \( -name 'base-*' ! -name "base-$base_key" \) | while read -r old; do discard "$old"; done
log "built $IMAGE"
echo "$IMAGE"
