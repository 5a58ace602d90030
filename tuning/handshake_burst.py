#!/usr/bin/env python3
"""TLS handshake bursts (issue 16): HANDSHAKES parallel TLS handshakes against a shard's
TLS listener, ROUNDS times, while the caller measures plaintext latency on the same shard
(`sluice bench` against the plaintext listener, see tuning/overload_bench.sh).

    handshake_burst.py HOST:PORT --ca CA.pem [--handshakes 2000] [--rounds 5]
                       [--pause 1.0] [--json]

Each round opens every connection at once (asyncio), completes the handshake, and
closes; it reports handshakes done and failed and the round's wall time, from which the
shard's handshake rate follows. Standard library only.
"""

import argparse
import asyncio
import json
import ssl
import sys
import time


async def one(host, port, context):
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context, server_hostname="localhost"), 30)
    except (OSError, asyncio.TimeoutError, ssl.SSLError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return True


async def burst(host, port, context, count):
    started = time.monotonic()
    results = await asyncio.gather(*(one(host, port, context) for _ in range(count)))
    return sum(results), count - sum(results), time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    rounds = []
    for _ in range(args.rounds):
        done, failed, secs = asyncio.run(burst(host, int(port), context, args.handshakes))
        rounds.append({"done": done, "failed": failed, "secs": round(secs, 3), "per_sec": round(done / secs, 1)})
        time.sleep(args.pause)
    if args.json:
        print(json.dumps({"handshakes": args.handshakes, "rounds": rounds}))
    else:
        for index, row in enumerate(rounds):
            print(f"round {index}: {row['done']} done, {row['failed']} failed in {row['secs']} s ({row['per_sec']}/s)")


if __name__ == "__main__":
    sys.exit(main())
