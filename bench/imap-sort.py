#!/usr/bin/env python3
"""How long an IMAP server takes to answer SORT and THREAD on a large mailbox (RFC 5256), with
a reader that does not parse (Python stdlib only; the connection of imap-fetch-raw.py).

For each command: the first time it is ever sent (a server reads every header then, or builds
its sort index), then ITERATIONS more, each in a session of its own (connect, LOGIN, SELECT,
the timed command, LOGOUT). Prints a summary line per command and one `RESULT {json}` line
each, with the first time, the p50 of the others, and what the answer held (messages sorted,
threads at the top), which must agree between servers given the same mailbox.

  imap-sort.py --target 127.0.0.1:3143 --user bench1 --password benchpass --iterations 20
"""
import importlib.util
import json
import pathlib
import statistics
import sys
import time

spec = importlib.util.spec_from_file_location("fetch_raw", pathlib.Path(__file__).with_name("imap-fetch-raw.py"))
fetch_raw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_raw)

COMMANDS = {
    "sort-date": "UID SORT (DATE) UTF-8 ALL",
    "thread-references": "UID THREAD REFERENCES UTF-8 ALL",
}


def answer_size(mode, received):
    """Messages in a SORT answer, or threads at the top of a THREAD answer."""
    for line in received.split(b"\r\n"):
        if mode.startswith("sort") and line.startswith(b"* SORT"):
            return len(line.split()) - 2
        if line.startswith(b"* THREAD"):
            depth, threads = 0, 0
            for octet in line[len(b"* THREAD"):]:
                if octet == ord("("):
                    threads += depth == 0
                    depth += 1
                elif octet == ord(")"):
                    depth -= 1
            return threads
    raise RuntimeError(f"no answer to {mode}: {received[-200:]!r}")


def timed(args, host, port, command):
    conn = fetch_raw.Connection(host, port, args.timeout)
    try:
        conn.command("a", f"LOGIN {fetch_raw.quoted(args.user)} {fetch_raw.quoted(args.password)}")
        conn.command("b", f"SELECT {fetch_raw.quoted(args.mailbox)}")
        start = time.perf_counter()
        received = conn.command("c", command)
        took = time.perf_counter() - start
        conn.command("d", "LOGOUT")
        return took, received
    finally:
        conn.sock.close()


def main():
    args, host, port = fetch_raw.target_arguments(__doc__, iterations=20, timeout=300)
    for mode, command in COMMANDS.items():
        first, received = timed(args, host, port, command)
        size = answer_size(mode, received)
        runs = [timed(args, host, port, command)[0] for _ in range(args.iterations)]
        p50 = statistics.median(runs) * 1000
        print(f"{mode}: first {first * 1000:.1f}ms, then p50 {p50:.2f}ms over {len(runs)}; {size} in the answer",
              file=sys.stderr)
        print("RESULT " + json.dumps({"mode": mode, "command": command, "iterations": len(runs),
                                      "first_ms": round(first * 1000, 3), "p50_ms": round(p50, 3),
                                      "answer_size": size}))


if __name__ == "__main__":
    main()
