#!/usr/bin/env python3
"""What one group commit costs: append a batch, then fdatasync, to a segment that grows
with every write (what the spool does), to one whose space was reserved with fallocate,
and to one zero-filled (and synced) beforehand. benches/PERFORMANCE.md cites it.

On a growing file every fdatasync also writes the inode (the size changed); fallocate'd
space is "unwritten" until written, so converting it is a metadata write too; only a
zero-filled file takes plain data writes. Run it on the filesystem that holds the spool:

    python3 benches/load/fdatasync.py [DIR] [--syncs 3000] [--batch 16] [--rounds 2]

Prints, per mode and round: fdatasyncs per second, wall time and process CPU per
append + fdatasync. Writes at most 256 MiB per file under DIR (default: ./target) and
removes it afterwards.
"""

import argparse
import os
import resource
import tempfile
import time

RECORD = 500  # bytes, about one voice event with callhook's record header
SPACE = 256 << 20


def prepare(fd: int, mode: str) -> None:
    if mode == "fallocate":
        os.posix_fallocate(fd, 0, SPACE)
        os.fsync(fd)
    elif mode == "zero-filled":
        zeros = bytes(1 << 20)
        for _ in range(SPACE >> 20):
            os.write(fd, zeros)
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)


def run(path: str, mode: str, syncs: int, batch: int) -> tuple[float, float, float]:
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o600)
    try:
        prepare(fd, mode)
        data = b"x" * (RECORD * batch)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for _ in range(syncs):
            os.write(fd, data)
            os.fdatasync(fd)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return syncs / wall, 1e6 * wall / syncs, 1e6 * cpu / syncs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default="target")
    ap.add_argument("--syncs", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16, help="records per fdatasync")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        print(f"{a.syncs} x (append {a.batch} x {RECORD} B + fdatasync) in {os.path.abspath(a.dir)}")
        print("| mode | round | fdatasync/s | wall us each | CPU us each |")
        print("|---|---:|---:|---:|---:|")
        for rnd in range(1, a.rounds + 1):
            for mode in ("growing", "fallocate", "zero-filled"):
                rate, wall, cpu = run(os.path.join(d, "segment"), mode, a.syncs, a.batch)
                print(f"| {mode} | {rnd} | {rate:.0f} | {wall:.0f} | {cpu:.0f} |")


if __name__ == "__main__":
    main()
