#!/usr/bin/env python3
"""How long an IMAP server takes to send `FETCH 1:* (FLAGS)`, measured with a reader that does
not parse (Python stdlib only).

login-fetch (imapbench.py) times the whole session as a client sees it, and a client that parses
each of 10,000 response lines spends most of that time parsing. This reader sends the FETCH and
only looks for the tagged reply at the end of what arrives, so its time is the server's: the
first octet shows how soon the server starts answering, the last one when it is done.

Per iteration: connect, LOGIN, SELECT, then the timed FETCH, LOGOUT. Prints a summary line and
one `RESULT {json}` line with the p50 of both times, the octets and the FETCH lines received.

  imap-fetch-raw.py --target 127.0.0.1:3143 --user bench1 --password benchpass --iterations 20
"""
import argparse
import json
import socket
import statistics
import sys
import time


def quoted(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Connection:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.read_until(b"\r\n")  # greeting

    def read_until(self, end):
        """Reads until the received octets end with `end`; returns them all."""
        while not self.buffer.endswith(end):
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buffer += data
        received, self.buffer = self.buffer, b""
        return received

    def command(self, tag, text):
        """Sends a command and returns everything up to its tagged reply, which must be OK."""
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        received = b""
        while True:
            received += self.read_until(b"\r\n")
            end_of_previous = received.rfind(b"\r\n", 0, len(received) - 2)
            last = received[end_of_previous + 2:] if end_of_previous >= 0 else received
            if last.startswith(tag.encode() + b" "):
                if not last.startswith(tag.encode() + b" OK"):
                    raise RuntimeError(f"{text.split()[0]} failed: {last!r}")
                return received


def fetch_once(args, host, port):
    conn = Connection(host, port, args.timeout)
    try:
        conn.command("a", f"LOGIN {quoted(args.user)} {quoted(args.password)}")
        conn.command("b", f"SELECT {quoted(args.mailbox)}")
        start = time.perf_counter()
        conn.sock.sendall(b"c FETCH 1:* (FLAGS)\r\n")
        first = None
        received = bytearray()
        while True:
            data = conn.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            if first is None:
                first = time.perf_counter()
            received += data
            # Only the end is looked at: the tagged reply is the last line.
            tail = bytes(received[-200:])
            if tail.endswith(b"\r\n") and (b"\r\nc OK" in tail or received.startswith(b"c OK")):
                break
            if tail.endswith(b"\r\n") and (b"\r\nc NO" in tail or b"\r\nc BAD" in tail):
                raise RuntimeError(f"FETCH failed: {tail[-100:]!r}")
        last = time.perf_counter()
        conn.command("d", "LOGOUT")
        return first - start, last - start, len(received), received.count(b" FETCH (")
    finally:
        conn.sock.close()


def target_arguments(description, iterations, timeout=60):
    """The options every IMAP reader here takes: where, as whom, which mailbox, how often.
    Returns them with the host and port of --target."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--mailbox", default="INBOX")
    parser.add_argument("--iterations", type=int, default=iterations)
    parser.add_argument("--timeout", type=float, default=timeout)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    return args, host or "127.0.0.1", int(port)


def main():
    args, host, port = target_arguments(__doc__, iterations=20)
    runs = [fetch_once(args, host, port) for _ in range(args.iterations)]
    first_ms = statistics.median(run[0] for run in runs) * 1000
    last_ms = statistics.median(run[1] for run in runs) * 1000
    octets, lines = runs[-1][2], runs[-1][3]
    print(f"fetch-raw: {len(runs)} iterations, {lines} messages, {octets} octets: "
          f"first octet p50={first_ms:.2f}ms, last octet p50={last_ms:.2f}ms", file=sys.stderr)
    print("RESULT " + json.dumps({"mode": "fetch-raw", "iterations": len(runs), "messages": lines, "octets": octets,
                                  "first_octet_p50_ms": round(first_ms, 3), "last_octet_p50_ms": round(last_ms, 3)}))


if __name__ == "__main__":
    main()
