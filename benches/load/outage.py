"""Memory while Kafka is unreachable: how much the forwarder holds when events keep coming
and no delivery report ever confirms them.

Starts callhook (release build by default) with Kafka forwarding to a loopback port nobody
listens on, sends EVENTS voice events of BODY_KIB KiB each (the seed `completed` event,
padded) over CONNS keep-alive connections, then keeps sampling for HOLD seconds (past one
`message_timeout_ms`, so librdkafka's failed sends come back for retry). Prints the peak
RSS (/proc/PID/status VmHWM) and, from /metrics, the records and bytes the forwarder holds.
Loopback only; every wait is bounded.

    python3 benches/load/outage.py [--bin target/release/callhook] [--events 20000]
        [--body-kib 32] [--conns 32] [--hold 40] [--toml 'max_in_flight_bytes = 67108864']

`--toml` lines go into the `[kafka]` table.
"""
import argparse
import asyncio
import re
import socket
import sys
import time

from gateway import free_port, padded_events, rss_kib, serve


def metric(port, name):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    m = re.search(rb"^" + name.encode() + rb" (\S+)$", data, re.M)
    return float(m.group(1)) if m else None


async def sender(port, bodies, counts):
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    for body in bodies:
        w.write(
            b"POST /webhooks/voice/event HTTP/1.1\r\nHost: outage\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        await w.drain()
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
        n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        await asyncio.wait_for(r.readexactly(n), 30)
        status = head.split(b" ")[1].decode()
        counts[status] = counts.get(status, 0) + 1
    w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/callhook")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--body-kib", type=int, default=32)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--hold", type=int, default=40)
    ap.add_argument("--toml", action="append", default=[])
    a = ap.parse_args()

    port, dead = free_port(), free_port()
    toml = (
        '[spool]\ndurability = "os"\nsegment_bytes = 67108864\n[log]\nlevel = "error"\n'
        f'[kafka]\nbrokers = "127.0.0.1:{dead}"\n' + "".join(t + "\n" for t in a.toml)
    )
    bodies = padded_events(
        a.events, a.body_kib, uuid="outage-{i}", conversation_uuid="CON-outage-{q}"
    )
    with serve(a.bin, port, toml) as proc:
        per = [bodies[c :: a.conns] for c in range(a.conns)]
        counts = {}
        peak = {"held": 0.0, "bytes": 0.0}

        def sample():
            peak["held"] = max(peak["held"], metric(port, "callhook_kafka_in_flight") or 0)
            peak["bytes"] = max(
                peak["bytes"], metric(port, "callhook_kafka_in_flight_bytes") or 0
            )

        t0 = time.time()

        async def send_all():
            # Sampled while sending too: the peak may come before the last event is in.
            async def sampler(done):
                while not done.is_set():
                    await asyncio.get_running_loop().run_in_executor(None, sample)
                    await asyncio.sleep(1)

            done = asyncio.Event()
            watch = asyncio.create_task(sampler(done))
            await asyncio.gather(*(sender(port, p, counts) for p in per))
            done.set()
            await watch

        asyncio.run(send_all())
        sent_s = time.time() - t0
        end = time.time() + a.hold
        while time.time() < end:
            sample()
            time.sleep(1)
        peak_held, peak_bytes = peak["held"], peak["bytes"]
        print(
            f"events {a.events} x {a.body_kib} KiB in {sent_s:.1f} s, statuses {counts}; "
            f"held peak {peak_held:.0f} records, {peak_bytes / 2**20:.1f} MiB; "
            f"RSS now {rss_kib(proc.pid, 'VmRSS') / 1024:.0f} MiB, "
            f"peak {rss_kib(proc.pid, 'VmHWM') / 1024:.0f} MiB"
        )

if __name__ == "__main__":
    sys.exit(main())
