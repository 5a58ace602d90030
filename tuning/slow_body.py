#!/usr/bin/env python3
"""The slow-body attack (issue 16): CONNECTIONS clients each announce a body of BODY
bytes, send all of it but the last byte, and stall. Without a memory budget every one of
them holds its body in the server until the body timeout; with one, what the budget
cannot hold is answered 503 at once.

    slow_body.py HOST:PORT [--connections 2000] [--body 524288] [--hold 10]
                 [--pid SERVER_PID] [--json]

Prints how many connections were refused (503 overloaded) and, with --pid, the server's
RssAnon before, at its peak while the attack holds, and after. Standard library only.
"""

import argparse
import json
import os
import selectors
import socket
import sys
import time


def rss_anon_kib(pid):
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--body", type=int, default=512 * 1024)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Key-Id: k\r\nX-Timestamp: 1\r\nX-Signature: v1=00\r\nContent-Length: {args.body}\r\n\r\n"
    ).encode()
    payload = head + b" " * (args.body - 1)
    selector = selectors.DefaultSelector()
    sockets = []
    before = rss_anon_kib(args.pid)
    for _ in range(args.connections):
        sock = socket.create_connection((host, int(port)))
        sock.setblocking(False)
        state = {"sock": sock, "sent": 0, "answer": b"", "closed": False}
        sockets.append(state)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, state)
    started = time.monotonic()
    peak = before or 0
    while time.monotonic() - started < args.hold:
        for key, events in selector.select(timeout=0.05):
            state = key.data
            sock = state["sock"]
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if data:
                    state["answer"] += data
                else:
                    state["closed"] = True
                    selector.unregister(sock)
                    continue
            if events & selectors.EVENT_WRITE and state["sent"] < len(payload):
                try:
                    state["sent"] += sock.send(payload[state["sent"] : state["sent"] + 262144])
                except (BlockingIOError, ConnectionResetError, BrokenPipeError):
                    pass
                if state["sent"] >= len(payload):
                    selector.modify(sock, selectors.EVENT_READ, state)
        rss = rss_anon_kib(args.pid)
        if rss is not None:
            peak = max(peak, rss)
    refused = sum(1 for state in sockets if b" 503 " in state["answer"][:16])
    fully_sent = sum(1 for state in sockets if state["sent"] >= len(payload))
    holding = sum(1 for state in sockets if not state["closed"] and not state["answer"])
    for state in sockets:
        state["sock"].close()
    time.sleep(1.0)
    after = rss_anon_kib(args.pid)
    result = {
        "connections": args.connections,
        "body_bytes": args.body,
        "refused_503": refused,
        "sent_whole_but_one_byte": fully_sent,
        "held_by_server": holding,
        "rss_anon_kib_before": before,
        "rss_anon_kib_peak": peak,
        "rss_anon_kib_after": after,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
