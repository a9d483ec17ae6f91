"""Write the ELF kernel inside a compressed bzImage (xz, zstd or gzip payload) to a file.

QEMU boots that ELF through its PVH entry point, which saves the guest from decompressing
the kernel itself (seconds under TCG).

    python3 extract-vmlinux.py BZIMAGE OUT
"""

from __future__ import annotations

import gzip
import lzma
import sys
import zlib


def _zstd(data: bytes) -> bytes:
    import subprocess

    out = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=False)
    return out.stdout


def extract(image: bytes) -> bytes:
    decoders = [
        (b"\xfd7zXZ\x00", lambda d: lzma.LZMADecompressor().decompress(d)),
        (b"\x28\xb5\x2f\xfd", _zstd),
        (b"\x1f\x8b\x08", lambda d: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(d)),
    ]
    for magic, decode in decoders:
        at = image.find(magic)
        while at >= 0:
            try:
                out = decode(image[at:])
            except (lzma.LZMAError, zlib.error, gzip.BadGzipFile):
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            at = image.find(magic, at + 1)
    raise SystemExit("extract-vmlinux: no ELF payload found in the kernel image")


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        elf = extract(f.read())
    with open(dst, "wb") as f:
        f.write(elf)
