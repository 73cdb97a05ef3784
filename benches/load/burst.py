"""Memory under a burst of large bodies: CONNS connections each send one voice event of
BODY_KIB KiB at the same moment (connections opened first, then released together).

Each body either arrives with its request head (and is in memory at once) or waits for
room in `server.slow_body_bytes` (64 MiB by default), beyond which the request gets a 503
with Retry-After instead of holding memory. Prints the statuses, the time the burst took
and callhook's peak RSS (/proc/PID/status VmHWM). Loopback only; every wait is bounded.
The client needs an open-file limit above CONNS (`ulimit -n`).

    python3 benches/load/burst.py [--bin target/release/callhook] [--conns 2000]
        [--body-kib 256]
"""
import argparse
import asyncio
import sys
import time

from gateway import free_port, padded_events, rss_kib, serve


async def one(port, body, gate, counts):
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    req = (
        b"POST /webhooks/voice/event HTTP/1.1\r\nHost: burst\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    )
    await gate.wait()
    w.write(req)
    await w.drain()
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
    status = head.split(b" ")[1].decode()
    counts[status] = counts.get(status, 0) + 1
    w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/callhook")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--body-kib", type=int, default=256)
    a = ap.parse_args()

    port = free_port()
    bodies = padded_events(a.conns, a.body_kib, uuid="burst-{i}")
    with serve(a.bin, port, '[log]\nlevel = "error"\n') as proc:
        counts = {}

        async def burst():
            gate = asyncio.Event()
            tasks = [asyncio.create_task(one(port, b, gate, counts)) for b in bodies]
            await asyncio.sleep(2)  # every connection open before any body goes
            t0 = time.time()
            gate.set()
            res = await asyncio.gather(*tasks, return_exceptions=True)
            return time.time() - t0, [r for r in res if isinstance(r, Exception)]

        took, errors = asyncio.run(burst())
        print(
            f"{a.conns} x {a.body_kib} KiB at once: statuses {dict(sorted(counts.items()))}, "
            f"{len(errors)} client errors (first: {errors[:3]}), {took:.1f} s; "
            f"peak RSS {rss_kib(proc.pid, 'VmHWM') // 1024} MiB"
        )

if __name__ == "__main__":
    sys.exit(main())
