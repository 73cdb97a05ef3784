"""Soak driver for benches/soak/run.sh (see there): fixed-rate voice events with unique ids,
samples every SAMPLE seconds, waits for the Kafka forwarder to drain, consumes the topic back
and reports accepted / consumed / missing / duplicates. Exit status 1 on any loss.

Standard library only, except confluent-kafka for the consumer (run.sh installs it in a venv).
Every id is an integer i: body uuid "soak-<i>". Outcomes are kept per id in a bytearray, so a
10-minute run at 5,000 req/s (3 M ids) costs 3 MB here.
"""

import argparse
import asyncio
import json
import os
import re
import sys
import time

ACKED, REFUSED, FAILED = 1, 2, 3


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class Body:
    """The seed `completed` event with its uuid replaced by soak-<i> (compact, as Vonage sends)."""

    def __init__(self, fixture):
        with open(fixture) as f:
            ev = json.load(f)
        ev["uuid"] = "@ID@"
        ev["conversation_uuid"] = "CON-soak-@CALL@"
        text = json.dumps(ev, separators=(",", ":"))
        self.a, rest = text.split("@ID@")
        self.b, self.c = rest.split("@CALL@")

    def request(self, host, i):
        body = f"{self.a}soak-{i}{self.b}{i // 4}{self.c}".encode()
        head = (
            f"POST /webhooks/voice/event HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body


async def http(reader, writer, raw, timeout):
    """One request on a keep-alive connection -> (status, body)."""
    writer.write(raw)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    body = await asyncio.wait_for(reader.readexactly(n), timeout) if n else b""
    if re.search(rb"(?i)\r\nconnection:\s*close", head):
        raise ConnectionResetError("server closed the connection")
    return status, body


def parse_metrics(text):
    """Sums every series of each metric name (labels dropped)."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, value = line.rpartition(" ")
        name = name.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


def status_5xx(text):
    return sum(
        float(l.rpartition(" ")[2])
        for l in text.splitlines()
        if l.startswith("callhook_http_requests_total{") and 'status="5xx"' in l
    )


class Soak:
    def __init__(self, a):
        self.a = a
        self.host = f"127.0.0.1:{a.port}"
        self.body = Body(a.fixture)
        self.total = int(a.duration * a.rate)
        self.outcome = bytearray(self.total)
        self.sent = self.acked = self.refused = self.failed = self.unsent = 0
        # Bounded in time: ids still queued this long after the start are not sent at all.
        self.deadline = time.monotonic() + a.duration * 1.5 + 30
        self.statuses = {}
        self.queue = asyncio.Queue()
        self.samples = []
        self.max_backlog = 0

    async def metrics(self):
        r, w = await asyncio.open_connection("127.0.0.1", self.a.port)
        try:
            raw = f"GET /metrics HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
            w.write(raw.encode())
            data = await asyncio.wait_for(r.read(), 10)
        finally:
            w.close()
        text = data.split(b"\r\n\r\n", 1)[1].decode()
        m = parse_metrics(text)
        m["http_5xx"] = status_5xx(text)
        return m

    def rss_kb(self):
        with open(f"/proc/{self.a.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    async def pacer(self):
        """Open loop: ids become due at a fixed rate, whatever the server does."""
        t0 = time.monotonic()
        issued = 0
        while issued < self.total:
            due = min(self.total, int((time.monotonic() - t0) * self.a.rate))
            while issued < due:
                self.queue.put_nowait(issued)
                issued += 1
            self.max_backlog = max(self.max_backlog, self.queue.qsize())
            await asyncio.sleep(0.005)
        for _ in range(self.a.conns):
            self.queue.put_nowait(None)

    async def worker(self):
        conn = None
        while True:
            i = await self.queue.get()
            if i is None:
                break
            if time.monotonic() > self.deadline:
                self.unsent += 1
                continue
            raw = self.body.request(self.host, i)
            self.sent += 1
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.a.port)
                status, _ = await http(conn[0], conn[1], raw, self.a.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                # Outcome unknown: the event may or may not be spooled; it is not "accepted".
                self.failed += 1
                self.outcome[i] = FAILED
                self.statuses[type(e).__name__] = self.statuses.get(type(e).__name__, 0) + 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            if 200 <= status < 300:
                self.acked += 1
                self.outcome[i] = ACKED
            else:
                self.refused += 1
                self.outcome[i] = REFUSED
                self.statuses[status] = self.statuses.get(status, 0) + 1
        if conn is not None:
            conn[1].close()

    async def take_sample(self, t0, last_acked, last_t):
        now = time.monotonic()
        try:
            m = await self.metrics()
        except (OSError, asyncio.TimeoutError) as e:
            log(f"metrics unavailable: {e}")
            m = {}
        s = {
            "t": round(now - t0),
            "rss_kb": self.rss_kb(),
            "acked": self.acked,
            "rate": (self.acked - last_acked) / max(now - last_t, 1e-9),
            "backlog": self.queue.qsize(),
            "lag_records": m.get("callhook_kafka_lag_records", float("nan")),
            "lag_s": m.get("callhook_kafka_lag_seconds", float("nan")),
            "spool_mb": m.get("callhook_spool_bytes", 0) / 1e6,
            "segments": m.get("callhook_spool_segments", 0),
            "write_err": m.get("callhook_spool_write_errors_total", 0),
            "produce_err": m.get("callhook_kafka_produce_errors_total", 0),
            "dlq": m.get("callhook_kafka_dlq_total", 0),
            "http_5xx": m.get("http_5xx", 0),
        }
        self.samples.append(s)
        print(
            f"{s['t']:>5}s  rss {s['rss_kb'] / 1024:7.1f} MB  2xx {s['acked']:>9}"
            f"  {s['rate']:7.0f}/s  backlog {s['backlog']:>6}  lag {s['lag_records']:>8.0f} rec"
            f" {s['lag_s']:6.2f} s  spool {s['spool_mb']:7.1f} MB/{s['segments']:.0f} seg"
            f"  errors: write {s['write_err']:.0f} produce {s['produce_err']:.0f}"
            f" dlq {s['dlq']:.0f} 5xx {s['http_5xx']:.0f}",
            flush=True,
        )
        return s

    async def drive(self):
        log(
            f"{self.total} events at {self.a.rate} req/s over {self.a.duration} s, "
            f"{self.a.conns} connections, sample every {self.a.sample} s"
        )
        t0 = time.monotonic()
        await self.take_sample(t0, 0, t0)
        stop = asyncio.Event()

        async def sampling():
            last_acked, last_t = 0, time.monotonic()
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), self.a.sample)
                    return
                except asyncio.TimeoutError:
                    pass
                await self.take_sample(t0, last_acked, last_t)
                last_acked, last_t = self.acked, time.monotonic()

        sampler = asyncio.create_task(sampling())
        await asyncio.gather(self.pacer(), *(self.worker() for _ in range(self.a.conns)))
        elapsed = time.monotonic() - t0
        stop.set()
        await sampler
        log(f"sending done after {elapsed:.1f} s ({self.sent / elapsed:.0f} req/s achieved)")
        return t0, elapsed

    async def drain(self, t0):
        """Waits until the forwarder has delivered (and checkpointed) everything spooled."""
        deadline = time.monotonic() + self.a.drain_timeout
        while True:
            m = await self.metrics()
            lag = m.get("callhook_kafka_lag_records", -1)
            held = m.get("callhook_kafka_in_flight", -1)
            cp = m.get("callhook_kafka_checkpoint_seq", -1)
            nxt = m.get("callhook_spool_next_seq", -2)
            if lag == 0 and held == 0 and cp == nxt:
                log(f"forwarder drained: checkpoint {cp:.0f} = spool end")
                return True
            if time.monotonic() > deadline:
                log(
                    f"forwarder NOT drained after {self.a.drain_timeout} s: lag {lag} in flight "
                    f"{held} checkpoint {cp} spool end {nxt}"
                )
                return False
            await asyncio.sleep(1)


def consume(a, want):
    """Reads the run's topics from the beginning -> (per-id counts, consumed, dlq, foreign)."""
    from confluent_kafka import Consumer, KafkaError

    c = Consumer(
        {
            "bootstrap.servers": a.brokers,
            "group.id": f"soak-check-{os.getpid()}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 16 * 1024 * 1024,
        }
    )
    c.subscribe([a.topic, a.dlq])
    counts = bytearray(want)
    consumed = dlq = foreign = distinct = 0
    pat = re.compile(rb'"uuid":"soak-(\d+)"')
    deadline = time.monotonic() + a.consume_timeout
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        msgs = c.consume(num_messages=10000, timeout=1.0)
        if not msgs:
            # Once every accepted id arrived, a quiet spell ends the read; otherwise wait longer.
            quiet = a.consume_idle if distinct < a.expect else 3
            if time.monotonic() - last_new > quiet:
                break
            continue
        last_new = time.monotonic()
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log(f"consumer: {m.error()}")
                continue
            if m.topic() == a.dlq:
                dlq += 1
                continue
            consumed += 1
            hit = pat.search(m.value() or b"")
            i = int(hit.group(1)) if hit else -1
            if not 0 <= i < want:
                foreign += 1
                continue
            if counts[i] == 0:
                distinct += 1
            if counts[i] < 255:
                counts[i] += 1
        if consumed and consumed % 100000 < len(msgs):
            log(f"consumed {consumed} ({distinct} distinct)")
    c.close()
    return counts, consumed, dlq, foreign


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--dlq", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--rate", type=float, default=5000)
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--sample", type=float, default=10)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--drain-timeout", type=float, default=600)
    p.add_argument("--consume-timeout", type=float, default=900)
    p.add_argument("--consume-idle", type=float, default=30)
    a = p.parse_args()

    soak = Soak(a)
    loop = asyncio.new_event_loop()
    t0, elapsed = loop.run_until_complete(soak.drive())
    drained = loop.run_until_complete(soak.drain(t0))
    final = loop.run_until_complete(soak.take_sample(t0, soak.acked, time.monotonic()))
    loop.close()

    a.expect = soak.acked
    log(f"consuming {a.topic} (and {a.dlq}) from the beginning")
    c0 = time.monotonic()
    counts, consumed, dlq, foreign = consume(a, soak.total)
    log(f"consumed {consumed} records in {time.monotonic() - c0:.1f} s")

    missing = dup = unexpected = refused_but_delivered = 0
    missing_ids = []
    for i in range(soak.total):
        n, o = counts[i], soak.outcome[i]
        if n > 1:
            dup += n - 1
        if o == ACKED and n == 0:
            missing += 1
            if len(missing_ids) < 10:
                missing_ids.append(i)
        elif o == REFUSED and n > 0:
            refused_but_delivered += 1
        elif o == 0 and n > 0:
            unexpected += 1
    rss = [s["rss_kb"] for s in soak.samples]
    errors = {k: final[k] for k in ("write_err", "produce_err", "dlq", "http_5xx")}
    print()
    print(
        f"soak result: {elapsed:.0f} s at a target {a.rate:.0f} req/s "
        f"(achieved {soak.sent / elapsed:.0f} req/s, max backlog {soak.max_backlog}), "
        f"{a.conns} connections"
    )
    print(f"  sent            {soak.sent}" + (f"  (not sent, past the deadline: {soak.unsent})" if soak.unsent else ""))
    print(f"  accepted (2xx)  {soak.acked}")
    print(f"  refused (non-2xx) {soak.refused}  connection errors/timeouts {soak.failed}"
          + (f"  {soak.statuses}" if soak.statuses else ""))
    print(f"  consumed        {consumed} (topic {a.topic}), dead-lettered {dlq}, foreign {foreign}")
    print(f"  missing         {missing}" + (f"  e.g. soak-{missing_ids}" if missing_ids else ""))
    print(f"  duplicates      {dup}")
    if refused_but_delivered or unexpected:
        print(f"  delivered though refused {refused_but_delivered}, never sent {unexpected}")
    print(
        f"  RSS first/last/max  {rss[0] / 1024:.1f} / {rss[-1] / 1024:.1f} / "
        f"{max(rss) / 1024:.1f} MB  ({len(rss)} samples)"
    )
    print(
        f"  errors          spool write {errors['write_err']:.0f}, kafka produce "
        f"{errors['produce_err']:.0f}, dlq {errors['dlq']:.0f}, http 5xx {errors['http_5xx']:.0f}"
    )
    print(f"  forwarder drained {'yes' if drained else 'NO'}")
    if soak.sent < 0.95 * a.duration * a.rate or elapsed > 1.05 * a.duration:
        print("  WARNING: the rate was not held (server or generator too slow, or the machine busy);"
              " raise CONNS or lower RATE")
    # Loss: an accepted id never arrived. Also a failure: records that are not ours in the
    # run's own topic, or a forwarder that never caught up (then "missing" means little).
    bad = missing > 0 or not drained or foreign > 0
    verdict = "LOSS" if missing else "FAIL" if bad else "no loss"
    print(f"  verdict         {verdict}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
