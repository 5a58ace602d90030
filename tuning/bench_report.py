#!/usr/bin/env python3
"""Reads the `sluice bench --json` files tuning/bench.sh writes and prints one line per
run (`row`) or the target check and the markdown rows for docs/PERFORMANCE.md (`summary`).
Standard library only."""
import json
import os
import sys


def load(path):
    with open(path) as handle:
        return json.load(handle)


def errors_of(run):
    """Connection errors, unanswered requests and answers that are not 2xx."""
    non_2xx = sum(count for code, count in run["status"].items() if not code.startswith("2"))
    expected_401 = run["status_by_kind"].get("bad_signature", {}).get("401", 0)
    return run["errors"].get("total", 0) + run["requests"].get("unanswered", 0) + non_2xx - expected_401


def row(path, label):
    run = load(path)
    lat = run["latency_us"]
    rate = f"{run['throughput']['requests_per_sec']:>10,.0f} req/s"
    templates = run.get("request_templates") or {}
    if run.get("batch", 1) > 1 or templates.get("events_max", 1) > 1:
        rate += f" {run['throughput']['events_per_sec']:>11,.0f} ev/s"
    lag = f"  max lag {run['schedule']['max_lag_us']:,.0f} us" if run.get("schedule") else ""
    status = " ".join(f"{code}x{count}" for code, count in sorted(run["status"].items()))
    exhausted = "  POOL EXHAUSTED" if run.get("pool_exhausted") else ""
    print(
        f"  {label:<22} {rate}  p50 {lat['p50']:>8,.0f}  p99 {lat['p99']:>8,.0f}  p99.9 {lat['p99_9']:>8,.0f}"
        f"  max {lat['max']:>9,.0f} us  errors {errors_of(run)}  [{status}]{lag}{exhausted}"
    )


def rss_kib(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [int(line) for line in handle if line.strip().isdigit()]


def metric_sum(path, name):
    total = 0.0
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                if line.startswith(name + "{") or line.startswith(name + " "):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def summary(work, commit, open_rate, fsync_rate, idle, soak_secs):
    runs = {name[:-5]: load(os.path.join(work, name)) for name in os.listdir(work) if name.endswith(".json")}
    rps = lambda name: runs[name]["throughput"]["requests_per_sec"]
    checks = []

    ratio = rps("sluice-single") / rps("nginx-single")
    checks.append(("single event, closed loop: sluice / nginx >= 0.75", f"{ratio:.2f}", ratio >= 0.75))

    run = runs["sluice-open"]
    lat = run["latency_us"]
    ok = lat["p99"] <= 1000 and lat["p99_9"] <= 2000 and errors_of(run) == 0 and run["measured_secs"] >= 30
    checks.append((
        f"open loop {int(open_rate):,}/s: p99 <= 1 ms, p99.9 <= 2 ms, no errors, >= 30 s",
        f"p99 {lat['p99']:,.0f} us, p99.9 {lat['p99_9']:,.0f} us, errors {errors_of(run)}, {run['measured_secs']:.0f} s",
        ok,
    ))

    events = runs["sluice-batch100"]["throughput"]["events_per_sec"]
    checks.append(("batches of 100: >= 1,000,000 events/s", f"{events:,.0f}", events >= 1_000_000))

    share = rps("sluice-fsync-single") / rps("sluice-single")
    checks.append(("fsync single / os single >= 0.50", f"{share:.2f}", share >= 0.5))

    run = runs["sluice-fsync-open"]
    probe = run.get("fsync_probe") or {}
    disk_p99 = probe.get("p99_us", 0.0)
    p99 = run["latency_us"]["p99"]
    checks.append((
        f"fsync open loop {int(fsync_rate):,}/s: p99 <= 1.5 x disk fdatasync p99",
        f"p99 {p99:,.0f} us vs disk p99 {disk_p99:,.0f} us (x{p99 / disk_p99 if disk_p99 else float('inf'):.2f}), errors {errors_of(run)}",
        disk_p99 > 0 and p99 <= 1.5 * disk_p99 and errors_of(run) == 0,
    ))

    rss = rss_kib(os.path.join(work, "rss-os.log"))
    accepted = metric_sum(os.path.join(work, "sluice-os.metrics"), "sluice_events_accepted_total")
    if rss:
        peak = max(rss) / 1024
        dedup = accepted * 36 / 2**20
        checks.append((
            f"memory: RssAnon <= 64 MiB with {int(idle):,} idle connections plus the load",
            f"peak {peak:.1f} MiB ({accepted:,.0f} ids in the dedup window, at most {dedup:.1f} MiB of it)",
            peak <= 64,
        ))
    soak = rss_kib(os.path.join(work, "rss-soak.log"))
    if int(soak_secs) > 0 and len(soak) > 20:
        settled = soak[len(soak) // 5]
        growth = (soak[-1] - settled) / 1024
        checks.append((f"memory: no growth over {soak_secs} s", f"{settled / 1024:.1f} -> {soak[-1] / 1024:.1f} MiB", growth <= 1))

    print("targets (issue 3):")
    for name, value, ok in checks:
        print(f"  [{'met' if ok else 'NOT MET'}] {name}: {value}")
    print()
    print(f"docs/PERFORMANCE.md rows (commit {commit}):")
    print("| run | req/s | events/s | p50 µs | p99 µs | p99.9 µs | max µs | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ["nginx-single", "sluice-single", "sluice-batch100", "sluice-open", "sluice-soak",
                 "sluice-fsync-single", "sluice-fsync-open"]:
        if name not in runs:
            continue
        run = runs[name]
        lat = run["latency_us"]
        print(
            f"| {name} | {run['throughput']['requests_per_sec']:,.0f} | {run['throughput']['events_per_sec']:,.0f} "
            f"| {lat['p50']:,.0f} | {lat['p99']:,.0f} | {lat['p99_9']:,.0f} | {lat['max']:,.0f} | {errors_of(run)} |"
        )


def tls_rows(work, commit, tls_rate):
    """TLS next to plaintext on the same server, and nginx, as docs/PERFORMANCE.md rows."""
    runs = {name[:-5]: load(os.path.join(work, name)) for name in os.listdir(work) if name.endswith(".json")}
    print(f"TLS rows (commit {commit}; open loop at {int(tls_rate):,}/s):")
    print("| run | req/s | p50 µs | p99 µs | p99.9 µs | max µs | errors |")
    print("|---|---|---|---|---|---|---|")
    for name in ["nginx-single", "plain-single", "tls-single", "plain-open", "tls-open"]:
        if name not in runs:
            continue
        run = runs[name]
        lat = run["latency_us"]
        print(
            f"| {name} | {run['throughput']['requests_per_sec']:,.0f} | {lat['p50']:,.0f} | {lat['p99']:,.0f} "
            f"| {lat['p99_9']:,.0f} | {lat['max']:,.0f} | {errors_of(run)} |"
        )
    if "plain-single" in runs and "tls-single" in runs:
        ratio = runs["tls-single"]["throughput"]["requests_per_sec"] / runs["plain-single"]["throughput"]["requests_per_sec"]
        print(f"TLS / plaintext closed-loop throughput: {ratio:.2f}")


if __name__ == "__main__":
    if sys.argv[1] == "row":
        row(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "tls":
        tls_rows(*sys.argv[2:5])
    else:
        summary(*sys.argv[2:8])
        tls_rows(sys.argv[2], sys.argv[3], sys.argv[8] if len(sys.argv) > 8 else 50000)
