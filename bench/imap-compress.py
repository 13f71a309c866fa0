#!/usr/bin/env python3
"""Octets on the wire for a full-mailbox header fetch, with and without COMPRESS=DEFLATE
(RFC 4978), and how long it takes (Python stdlib only: socket and zlib).

Per iteration and mode: connect, LOGIN, (COMPRESS DEFLATE,) SELECT, then the timed
`FETCH 1:* (BODY.PEEK[HEADER])`, LOGOUT. The octets received for the FETCH are counted as they
arrive on the socket (compressed or not) and after inflating. Prints a summary line per mode and
one `RESULT {json}` line each with the p50 time and the octets of the last iteration.

  imap-compress.py --target 127.0.0.1:3143 --user bench1 --password benchpass --iterations 5
"""
import importlib.util
import json
import pathlib
import socket
import statistics
import sys
import time
import zlib

spec = importlib.util.spec_from_file_location("fetch_raw", pathlib.Path(__file__).with_name("imap-fetch-raw.py"))
fetch_raw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch_raw)

FETCH = b"f FETCH 1:* (BODY.PEEK[HEADER])\r\n"


class Session:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deflate = self.inflate = None
        self.plain = bytearray()
        self.wire = self.inflated = 0
        self.until(b"")  # greeting

    def send(self, data):
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def until(self, tag):
        """Reads up to the line tagged `tag`, which must be OK (the greeting for an empty tag).
        Only the end of what arrived is searched, as in imap-fetch-raw.py."""
        while True:
            if self.plain.endswith(b"\r\n"):
                start = self.plain.rfind(b"\r\n", 0, len(self.plain) - 2)
                last = self.plain[start + 2:] if start >= 0 else self.plain
                if not tag or last.startswith(tag + b" "):
                    if tag and not last.startswith(tag + b" OK"):
                        raise RuntimeError(f"{tag!r} failed: {last!r}")
                    received, self.plain = self.plain, bytearray()
                    return received
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.wire += len(data)
            if self.inflate:
                data = self.inflate.decompress(data)
            self.inflated += len(data)
            self.plain += data

    def command(self, tag, text):
        self.send(f"{tag} {text}\r\n".encode())
        return self.until(tag.encode())


def fetch_headers(args, host, port, compress):
    session = Session(host, port, args.timeout)
    try:
        session.command("a", f"LOGIN {fetch_raw.quoted(args.user)} {fetch_raw.quoted(args.password)}")
        if compress:
            session.command("z", "COMPRESS DEFLATE")
            session.deflate = zlib.compressobj(wbits=-15)
            session.inflate = zlib.decompressobj(wbits=-15)
        session.command("b", f"SELECT {fetch_raw.quoted(args.mailbox)}")
        session.wire = session.inflated = 0
        start = time.perf_counter()
        session.send(FETCH)
        received = session.until(b"f")
        took = time.perf_counter() - start
        wire, inflated = session.wire, session.inflated
        session.send(b"d LOGOUT\r\n")
        return took, wire, inflated, received.count(b" FETCH (")
    finally:
        session.sock.close()


def main():
    args, host, port = fetch_raw.target_arguments(__doc__, iterations=5, timeout=300)
    for mode, compress in (("headers-plain", False), ("headers-deflate", True)):
        runs = [fetch_headers(args, host, port, compress) for _ in range(args.iterations)]
        p50 = statistics.median(run[0] for run in runs) * 1000
        _, wire, inflated, messages = runs[-1]
        print(f"{mode}: {messages} messages, {wire} octets on the wire for {inflated}, p50 {p50:.1f}ms",
              file=sys.stderr)
        print("RESULT " + json.dumps({"mode": mode, "iterations": len(runs), "messages": messages,
                                      "wire_octets": wire, "plain_octets": inflated, "p50_ms": round(p50, 3)}))


if __name__ == "__main__":
    main()
