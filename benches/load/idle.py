"""Opens N keep-alive connections to callhook, one request each, then holds them idle.

    python3 benches/load/idle.py PORT N    (run.sh runs it and samples callhook's RSS)

Prints "ready OPEN" once every connection answered, waits for a line on stdin (the load
script samples RSS meanwhile), then counts how many are still open and closes them.
Loopback only; bounded by the timeouts below.
"""
import asyncio
import resource
import sys

HOST, PORT, N = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2])
REQ = b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n"


async def one(conns):
    r, w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 30)
    w.write(REQ)
    await w.drain()
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await asyncio.wait_for(r.readexactly(length), 30)
    conns.append((r, w))


async def main():
    conns = []
    sem = asyncio.Semaphore(500)

    async def limited():
        async with sem:
            await one(conns)

    results = await asyncio.gather(*(limited() for _ in range(N)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    print(f"ready {len(conns)} failed {len(failed)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    still = sum(1 for r, _ in conns if not r.at_eof())
    print(f"still-open {still}", flush=True)
    for _, w in conns:
        w.close()


# One descriptor per connection: raise the soft limit to the hard one, so that N
# connections are not cut short by a default of 1,024 (the load script reports how many
# opened, and refuses a run where any failed).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
asyncio.run(main())
