#!/usr/bin/env python3
"""TLS handshake bursts (issue 16): HANDSHAKES parallel TLS handshakes against a shard's
TLS listener, ROUNDS times, while the caller measures plaintext latency on the same shard
(`sluice bench` against the plaintext listener, see tuning/overload_bench.sh).

    handshake_burst.py HOST:PORT --ca CA.pem [--handshakes 2000] [--rounds 5]
                       [--pause 1.0] [--json]

Each round opens every connection at once (asyncio), completes the handshake, and
closes; it reports handshakes done and failed and the round's wall time, from which the
shard's handshake rate follows. A Python client makes about 1,000 handshakes a second,
slower than one shard answers them, so with --hellos the round instead connects every
socket first, then sends each a ClientHello made beforehand (in memory) within a few
milliseconds: the server does the expensive half of every handshake (key share,
signature) at once, which is the burst a balancer restart brings. It reports how long
until every connection had the server's first flight. Standard library only.
"""

import argparse
import asyncio
import json
import socket
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


def client_hello(context):
    """One ClientHello, as the first bytes a TLS client sends."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def hello_burst(host, port, context, count):
    """Connects `count` sockets, sends each a ClientHello at once, and waits until each
    has the server's first flight (or 30 s). Returns (answered, failed, seconds)."""
    hellos = [client_hello(context) for _ in range(min(count, 64))]
    sockets = [socket.create_connection((host, port)) for _ in range(count)]
    started = time.monotonic()
    for index, sock in enumerate(sockets):
        sock.sendall(hellos[index % len(hellos)])
    answered = 0
    for sock in sockets:
        sock.settimeout(max(0.1, 30 - (time.monotonic() - started)))
        try:
            answered += bool(sock.recv(65536))
        except OSError:
            pass
    secs = time.monotonic() - started
    for sock in sockets:
        sock.close()
    return answered, count - answered, secs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--hellos", action="store_true", help="send pre-made ClientHellos to every socket at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    rounds = []
    for _ in range(args.rounds):
        if args.hellos:
            done, failed, secs = hello_burst(host, int(port), context, args.handshakes)
        else:
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
