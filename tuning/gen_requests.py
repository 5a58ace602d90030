#!/usr/bin/env python3
"""Writes pre-signed sluice requests (SPEC §1.1) for wrk's replay.lua: raw HTTP/1.1
requests separated by NUL bytes. Every event has a unique event_id, so a run that does
not wrap around the file stores every request. Signing happens here, before the clock."""
import argparse, base64, hashlib, hmac, json, os, re, time

parser = argparse.ArgumentParser()
parser.add_argument("--keys", required=True, help="key ring file (first key is used)")
parser.add_argument("--out", required=True)
parser.add_argument("--count", type=int, default=300_000, help="requests to write")
parser.add_argument("--batch", type=int, default=1, help="events per request (1 = POST /v1/events)")
parser.add_argument("--users", type=int, default=100_000, help="distinct user_id values")
args = parser.parse_args()

ring = open(args.keys).read()
kid = re.search(r'kid = "([^"]+)"', ring).group(1)
secret_b64 = re.search(r'secret = "whsec_([^"]+)"', ring).group(1)
secret = base64.b64decode(secret_b64 + "=" * (-len(secret_b64) % 4))
run = os.urandom(4).hex()
ts = str(int(time.time()))
path, ctype = ("/v1/events", "application/json") if args.batch == 1 else ("/v1/events/batch", "application/x-ndjson")
serial = 0
with open(args.out, "wb") as out:
    for _ in range(args.count):
        events = []
        for _ in range(args.batch):
            serial += 1
            events.append(json.dumps({
                "event_id": f"e_{run}_{serial}", "event_type": "bet", "schema_version": "1.3.0",
                "occurred_at": "2025-10-24T11:37:21Z", "key": {"user_id": f"u_{serial % args.users}"},
                "ctx": {"session_id": "s_778", "platform": "ios", "geo": "TR", "device_fp": "fp_4a1"},
                "payload": {"game_id": "slot_wolf", "bet": 0.5, "win": 1.25, "currency": "EUR", "provider": "GameCo"},
            }, separators=(",", ":")))
        body = "\n".join(events).encode()
        sig = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {ctype}\r\n"
                f"X-Key-Id: {kid}\r\nX-Timestamp: {ts}\r\nX-Signature: v1={sig}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        out.write(head + body + b"\0")
