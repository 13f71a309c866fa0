#!/usr/bin/env python3
"""LMTP delivery load: the peer-side twin of `mailstore-bench deliver` (Python stdlib only).

C threads, each with one persistent LMTP connection (like C delivery workers), deliver N
messages of about SIZE octets round-robin over the users
{prefix}{offset+1}..{prefix}{offset+A}@{domain}: per message MAIL FROM, RCPT TO, DATA.
Throughput is N / wall time of the run; latency is per message, MAIL FROM to the DATA reply.
Before the first run every client delivers --warmup untimed messages (10, as mailstore-bench).

Prints one JSON line per run and a summary line with medians, with the same fields as
mailstore-bench, plus the client's own CPU seconds (the GIL makes a Python client costlier
than the Rust one; compare it with the server's CPU).

  lmtp-load.py --target 127.0.0.1:3424 --clients 16 --messages 5000 --size 4096 --users 50 --runs 3
"""
import argparse
import json
import resource
import smtplib
import statistics
import sys
import threading
import time

DATE = "Thu, 01 Jan 2026 09:30:00 +0000"
WORDS = ("the queue mailbox delivery report meeting invoice attached please review schedule tomorrow "
         "project update status thanks regards cluster storage latency release notes customer question "
         "answer weekly budget draft final version with and for about from our team next week morning "
         "call agenda summary").split()
BODY_VARIANTS = 16


def body_text(size, seed):
    """Words from a small linear congruential generator, lines of at most 76 characters."""
    state = seed * 2654435761 + 1
    lines, line, total = [], "", 0
    while total < size:
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        word = WORDS[(state >> 33) % len(WORDS)]
        if len(line) + 1 + len(word) > 76:
            lines.append(line + "\r\n")
            total += len(line) + 2
            line = ""
        line = f"{line} {word}" if line else word
    return "".join(lines)


class Messages:
    """Messages of about `size` octets with the same header fields as mailstore-bench's; each
    has its own Message-ID."""

    def __init__(self, size):
        self.size = size
        self.bodies = [body_text(size, seed) for seed in range(BODY_VARIANTS)]

    def message(self, tag, index, rcpt):
        n = index % 97
        header = (f"Received: from mx.example.org (mx.example.org [192.0.2.10])\r\n"
                  f"\tby mail.bench.test with ESMTPS id {tag}-{index}\r\n"
                  f"\tfor <{rcpt}>; {DATE}\r\n"
                  f"From: Sender {n} <sender{n}@example.org>\r\n"
                  f"To: <{rcpt}>\r\n"
                  f"Subject: Weekly status report {index}\r\n"
                  f"Date: {DATE}\r\n"
                  f"Message-ID: <{tag}.{index}@example.org>\r\n"
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: 7bit\r\n\r\n")
        body = self.bodies[index % len(self.bodies)]
        wanted = min(max(self.size - len(header), 0), len(body))
        cut = body.rfind("\r\n", 0, wanted)  # end on a complete line
        body = body[:cut + 2] if cut >= 0 else ""
        return (header + body).encode()


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    rank = (len(sorted_values) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def deliver_batch(a, messages, tag, count):
    """Delivers `count` messages over a.clients connections; returns (seconds, latencies, bytes)."""
    host, _, port = a.target.rpartition(":")
    users = [f"{a.prefix}{a.offset + i + 1}@{a.domain}" for i in range(a.users)]
    lock = threading.Lock()
    state = {"next": 0, "bytes": 0}
    latencies, errors = [], []

    def worker():
        try:
            conn = smtplib.LMTP(host or "127.0.0.1", int(port), timeout=60)
            conn.ehlo("loadgen.example.org")  # LMTP's LHLO
            try:
                while True:
                    with lock:
                        index = state["next"]
                        state["next"] += 1
                    if index >= count:
                        return
                    rcpt = users[index % len(users)]
                    raw = messages.message(tag, index, rcpt)
                    started = time.perf_counter()
                    refused = conn.sendmail(f"sender{index % 97}@example.org", [rcpt], raw)
                    elapsed = time.perf_counter() - started
                    if refused:
                        raise RuntimeError(f"{rcpt} refused: {refused}")
                    with lock:
                        latencies.append(elapsed)
                        state["bytes"] += len(raw)
            finally:
                conn.quit()
        except Exception as error:  # reported once all threads are done
            with lock:
                errors.append(repr(error))
                state["next"] = count  # stop the other workers too

    threads = [threading.Thread(target=worker) for _ in range(a.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise SystemExit(f"lmtp-load: {len(errors)} client(s) failed, first: {errors[0]}")
    return seconds, latencies, state["bytes"]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:3424", help="HOST:PORT of the LMTP server")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--messages", type=int, default=1000, help="messages per run")
    ap.add_argument("--size", type=int, default=4096, help="message size in octets, header included")
    ap.add_argument("--users", type=int, default=50, help="recipients, used round-robin")
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--offset", type=int, default=100, help="first user is PREFIX{offset+1}")
    ap.add_argument("--domain", default="bench.test")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10, help="untimed messages per client before run 1")
    a = ap.parse_args()
    if min(a.clients, a.messages, a.users, a.runs) < 1:
        ap.error("--clients, --messages, --users and --runs must be at least 1")

    messages = Messages(a.size)
    run_id = f"lmtp-{int(time.time() * 1000)}"
    if a.warmup > 0:
        deliver_batch(a, messages, f"{run_id}-warmup", a.clients * a.warmup)
    rates, p50s, p99s = [], [], []
    for run in range(1, a.runs + 1):
        cpu_before = cpu_seconds()
        seconds, latencies, nbytes = deliver_batch(a, messages, f"{run_id}-r{run}", a.messages)
        cpu = cpu_seconds() - cpu_before
        ms = sorted(x * 1000.0 for x in latencies)
        rate = a.messages / seconds
        p50, p99 = pct(ms, 50), pct(ms, 99)
        print(json.dumps({
            "bench": "lmtp-deliver", "run": run, "clients": a.clients, "size": a.size,
            "mean_message_bytes": nbytes // a.messages, "accounts": a.users, "messages": a.messages,
            "seconds": round(seconds, 3), "deliveries_per_s": round(rate, 3), "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3), "mean_ms": round(sum(ms) / len(ms), 3), "client_cpu_s": round(cpu, 3)}),
            flush=True)
        print(f"lmtp run {run}: {a.messages} x {a.size} B, {a.clients} clients: {rate:.0f}/s, "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, client CPU {cpu:.2f} s", file=sys.stderr)
        rates.append(rate)
        p50s.append(p50)
        p99s.append(p99)
    print(json.dumps({
        "bench": "lmtp-deliver-summary", "clients": a.clients, "size": a.size, "accounts": a.users,
        "messages": a.messages, "runs": a.runs, "median_deliveries_per_s": round(statistics.median(rates), 3),
        "median_p50_ms": round(statistics.median(p50s), 3), "median_p99_ms": round(statistics.median(p99s), 3)}),
        flush=True)


if __name__ == "__main__":
    main()
