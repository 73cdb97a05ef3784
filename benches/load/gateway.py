"""What the Python load scripts (outage.py, burst.py) share: a callhook release build
started on a loopback port with a config of their own, voice events padded to a size,
and the process's memory figures. Not a script itself."""
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time

SEED = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/seed-inbound-completed.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field):
    """A memory figure of /proc/PID/status in KiB: VmRSS now, VmHWM the peak."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def padded_events(n, kib, **fields):
    """N seed voice events of about KIB KiB each; `fields` are formats of i (uuid...)."""
    seed = json.load(open(SEED))
    out = []
    for i in range(n):
        ev = dict(seed, **{k: v.format(i=i, q=i // 4) for k, v in fields.items()})
        raw = json.dumps(ev)
        ev["padding"] = "x" * max(0, kib * 1024 - len(raw) - 16)
        out.append(json.dumps(ev).encode())
    return out


@contextlib.contextmanager
def serve(binary, port, toml=""):
    """callhook serving on 127.0.0.1:PORT with `toml` after its [server] table, in a
    scratch data dir; waits (at most 20 s) for its "listening" line, stops it after."""
    work = tempfile.mkdtemp(prefix="callhook-load-")
    cfg = os.path.join(work, "c.toml")
    with open(cfg, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n{toml}')
    proc = subprocess.Popen(
        [binary, "serve", "--config", cfg, "--data-dir", os.path.join(work, "d")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            line = proc.stdout.readline()
            if "listening" in line or not line:
                break
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["rm", "-rf", work])
