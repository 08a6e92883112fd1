"""The WebSocket clients of ``bench --serve``, in a process of their own so that their CPU is not the
server's: ``python -m doascope.app.bench.serve_clients URL N SECONDS`` connects N clients, says
"ready", reads for SECONDS and prints each client's frame count and lost frames as JSON."""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url, n, seconds):
    loop = asyncio.get_running_loop()
    window, results, ready = {}, [None] * n, [0]
    all_ready = asyncio.Event()

    async def one(i):
        seqs = []
        async with connect(url, open_timeout=60, close_timeout=2) as ws:
            first = True
            async for text in ws:
                msg = json.loads(text)
                if msg.get("type") != "doa":
                    continue
                if first:
                    first = False
                    ready[0] += 1
                    if ready[0] == n:
                        all_ready.set()
                if window:
                    t = loop.time()
                    if t >= window["end"]:
                        break
                    if t >= window["start"]:
                        seqs.append(msg["seq"])
        results[i] = seqs

    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    await asyncio.wait_for(all_ready.wait(), 60)
    window.update(start=loop.time(), end=loop.time() + seconds)
    print("ready", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
    print(json.dumps({"counts": [len(s) for s in results],
                      "lost": [sum(b - a - 1 for a, b in zip(s, s[1:])) for s in results]}), flush=True)

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
