"""Carry HCI between the guest kernel's /dev/vhci and a virtio serial port (H4 framing).

The controller (bumble) runs on the host, at native speed; the guest kernel and
bluetoothd see an ordinary hci0. /dev/vhci takes exactly one packet per write, so the
byte stream from the port is cut into packets by their H4 headers. Standard library
only, and started with `python3 -S`: it must be up in a second even under TCG.

    python3 -S hci-relay.py /dev/vportNpM
"""

import os
import sys
import threading

HCI_VENDOR_PKT, HCI_PRIMARY = 0xFF, 0x00
# H4 packet type -> (header length, offset and size of the length field in the header)
HEADERS = {0x01: (3, 2, 1), 0x02: (4, 2, 2), 0x03: (3, 2, 1), 0x04: (2, 1, 1), 0x05: (4, 2, 2)}


def read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def port_to_vhci(port: int, vhci: int) -> None:
    while True:
        kind = read_exact(port, 1)
        hlen, at, size = HEADERS[kind[0]]
        header = read_exact(port, hlen)
        length = int.from_bytes(header[at : at + size], "little")
        if kind[0] == 0x05:
            length &= 0x3FFF
        os.write(vhci, kind + header + read_exact(port, length))


def main() -> None:
    port = os.open(sys.argv[1], os.O_RDWR)
    vhci = os.open("/dev/vhci", os.O_RDWR)
    os.write(vhci, bytes([HCI_VENDOR_PKT, HCI_PRIMARY]))
    threading.Thread(target=port_to_vhci, args=(port, vhci), daemon=True).start()
    while True:
        packet = os.read(vhci, 4096)
        if packet and packet[0] == HCI_VENDOR_PKT:  # the kernel's "you are hciN"
            continue
        write_all(port, packet)


if __name__ == "__main__":
    main()
