#!/usr/bin/env python3
"""POP3 load for bench/pop3.sh (Python 3 stdlib only, asyncio, plain TCP, USER/PASS).

Every mode checks what the server answers: each reply must be +OK, STAT must count the
messages the mailbox was filled with (--expect), UIDL must list them all once each, numbered
1..n, and every RETR must carry, once its byte-stuffing is undone, exactly the octets LIST
announced for that message. A reply that is not what POP3 says it must be is a protocol error:
the session counts as failed, never as fast. Every read has a timeout (--timeout) and every loop
a bound (--iterations, --max-time, --duration).

Modes
  download    one untimed listing session (STAT, LIST, UIDL: each message's size by its UIDL
              id), then --iterations sessions one after the other of connect (greeting),
              USER/PASS, STAT, UIDL, RETR of every message, QUIT; nothing is deleted.
  poll        --iterations sessions one after the other of connect, USER/PASS, STAT, UIDL, QUIT:
              what a phone does to learn that nothing is new.
  concurrent  --clients clients, each repeating the poll session on its own connection for
              --duration seconds; the clients take the accounts of --users in turn.
              Sessions per second (completed and checked) and failed sessions.
  delete      connect, USER/PASS, STAT, DELE of every message one at a time, QUIT (the UPDATE
              state, where the messages are removed); then an untimed session checks that the
              maildrop is empty.
  check       one session: STAT, LIST, UIDL and QUIT; prints the message count.

Each mode prints a summary on stderr and one line `RESULT {json}` on stdout; times in
milliseconds (p50/p90/p99 per phase). In the sequential modes the first protocol error ends the
run: the RESULT says `"failed": true` with the error, and the exit status is 1. `concurrent`
exits 1 when any session failed, after its RESULT.

  pop3-load.py download   --target 127.0.0.1:1110 --user bench1@bench.test --expect 500 --iterations 5
  pop3-load.py poll       --target 127.0.0.1:1110 --user bench3@bench.test --expect 10000 --iterations 50
  pop3-load.py concurrent --target 127.0.0.1:1110 --users bench3@bench.test,bench4@bench.test \\
                          --expect 10000 --clients 10 --duration 20
  pop3-load.py delete     --target 127.0.0.1:1110 --user bench2@bench.test --expect 200
"""
import argparse
import asyncio
import json
import re
import resource
import sys
import time

READ_SIZE = 1 << 18
STAT_RE = re.compile(rb"^\+OK (\d+) (\d+)")
OCTETS_RE = re.compile(rb"^\+OK (\d+) octets", re.I)


class ProtocolError(Exception):
    """The server answered something POP3 does not allow here, or not what it must."""


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(seconds):
    """n, mean, p50, p90, p99 and max of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "mean_ms": round(sum(ms) / len(ms), 3), "p50_ms": round(percentile(ms, 50), 3),
            "p90_ms": round(percentile(ms, 90), 3), "p99_ms": round(percentile(ms, 99), 3),
            "max_ms": round(max(ms), 3)}


def unstuff(body):
    """A multi-line response's content with the byte-stuffing undone (RFC 1939 §3): every line
    the server sent starting with `.` had another `.` put in front of it."""
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


class Pop3:
    """One connection: buffered reads, one timeout per reply."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.reader = self.writer = None
        self.buf = b""

    async def connect(self, host, port):
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
        greeting = await self._timed(self._line())
        if not greeting.startswith(b"+OK"):
            raise ProtocolError(f"greeting: {greeting[:200]!r}")
        return greeting

    def close(self):
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
            self.writer = None

    async def _timed(self, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except asyncio.TimeoutError:
            raise ProtocolError(f"no complete reply within {self.timeout} s") from None

    async def _more(self):
        data = await self.reader.read(READ_SIZE)
        if not data:
            raise ProtocolError("the server closed the connection")
        self.buf += data

    async def _line(self):
        """The next line, without its CRLF."""
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                return line
            if len(self.buf) > 65536:
                raise ProtocolError("a reply line longer than 64 KiB")
            await self._more()

    async def _body(self):
        """The content of a multi-line response, still byte-stuffed, up to its terminating line
        `.` (which is not included): every line with its CRLF."""
        # The status line's CRLF counts as the end of a line, so an empty body is just ".\r\n".
        data = bytearray(b"\r\n")
        data += self.buf
        self.buf = b""
        scan = 0
        while True:
            end = data.find(b"\r\n.\r\n", scan)
            if end >= 0:
                self.buf = bytes(data[end + 5:])
                return bytes(data[2:end + 2])
            scan = max(0, len(data) - 4)
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                raise ProtocolError("the server closed the connection inside a multi-line response")
            data += chunk

    async def command(self, text, shown=None):
        """Sends a command and returns its status line, which must be +OK."""
        self.writer.write(text.encode() + b"\r\n")
        line = await self._timed(self._line())
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"{shown or text}: {line[:200].decode(errors='replace')}")
        return line

    async def multiline(self, text):
        """Sends a command with a multi-line answer: (status line, content, byte-stuffed)."""
        status = await self.command(text)
        body = await self._timed(self._body())
        return status, body

    async def login(self, user, password):
        await self.command(f"USER {user}")
        await self.command(f"PASS {password}", shown="PASS ***")

    async def stat(self, expect):
        line = await self.command("STAT")
        match = STAT_RE.match(line)
        if not match:
            raise ProtocolError(f"STAT: {line[:200]!r}")
        count, octets = int(match.group(1)), int(match.group(2))
        if expect is not None and count != expect:
            raise ProtocolError(f"STAT counts {count} messages, the mailbox was filled with {expect}")
        return count, octets

    async def numbered(self, command, count):
        """The lines of a LIST or UIDL without argument: one per message, numbered 1..count."""
        _, body = await self.multiline(command)
        lines = body.split(b"\r\n")[:-1] if body else []
        if len(lines) != count:
            raise ProtocolError(f"{command} lists {len(lines)} messages, STAT counted {count}")
        values = []
        for number, line in enumerate(lines, 1):
            first, _, value = line.partition(b" ")
            if first != b"%d" % number or not value:
                raise ProtocolError(f"{command}: line {number} is {line[:100]!r}")
            values.append(value)
        return values

    async def uidl(self, count):
        ids = await self.numbered("UIDL", count)
        if len(set(ids)) != len(ids):
            raise ProtocolError("UIDL gives two messages the same unique id")
        return ids

    async def retr(self, number, size):
        """RETR: the message's octets, which must be `size` once the byte-stuffing is undone."""
        status, body = await self.multiline(f"RETR {number}")
        content = unstuff(body)
        if len(content) != size:
            raise ProtocolError(f"RETR {number} returned {len(content)} octets, LIST announced {size}")
        stated = OCTETS_RE.match(status)
        if stated and int(stated.group(1)) != size:
            raise ProtocolError(f"RETR {number} says {status[:80]!r}, LIST announced {size}")
        return len(content)

    async def quit(self):
        await self.command("QUIT")
        self.close()


def target(text):
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def emit(mode, data):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    data = {"mode": mode, **data, "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
    print("RESULT " + json.dumps(data, sort_keys=True), flush=True)


async def listing(a):
    """An untimed session: {UIDL id: LIST size}, and the message count."""
    host, port = target(a.target)
    c = Pop3(a.timeout)
    try:
        await c.connect(host, port)
        await c.login(a.user, a.password)
        count, octets = await c.stat(a.expect)
        sizes = [int(s) for s in await c.numbered("LIST", count)]
        if sum(sizes) != octets:
            raise ProtocolError(f"LIST adds up to {sum(sizes)} octets, STAT said {octets}")
        ids = await c.uidl(count)
        await c.quit()
        return dict(zip(ids, sizes)), count, octets
    finally:
        c.close()


class Phases:
    """Per-phase durations of the sessions of a sequential run."""

    def __init__(self, names):
        self.names = names
        self.seconds = {name: [] for name in names + ["total"]}

    def add(self, marks):
        """marks: perf_counter() at the start and after each phase."""
        for name, start, end in zip(self.names, marks, marks[1:]):
            self.seconds[name].append(end - start)
        self.seconds["total"].append(marks[-1] - marks[0])

    def summaries(self):
        return {name: summary(values) for name, values in self.seconds.items()}


async def sequential(a, mode, session, phase_names, extra):
    """Runs `session` --iterations times one after the other (within --max-time); stops at the
    first protocol error."""
    phases = Phases(phase_names)
    error = None
    deadline = time.monotonic() + a.max_time
    for _ in range(a.iterations):
        if time.monotonic() > deadline:
            break
        try:
            phases.add(await session())
        except (ProtocolError, OSError) as e:
            error = f"{type(e).__name__}: {e}"
            break
    out = {"phases": phases.summaries(), "sessions": len(phases.seconds["total"]), "requested": a.iterations,
           "failed": error is not None, **extra()}
    if error:
        out["error"] = error
    total = out["phases"]["total"]
    print(f"{mode}: {total['n']} sessions, total p50 {total.get('p50_ms')} ms p90 {total.get('p90_ms')} ms; "
          + ", ".join(f"{n} p50 {s.get('p50_ms')}" for n, s in out["phases"].items() if n != "total")
          + (f"; FAILED: {error}" if error else ""), file=sys.stderr)
    emit(mode, out)
    return 1 if error else 0


async def m_download(a):
    try:
        sizes, count, octets = await listing(a)
    except (ProtocolError, OSError) as e:
        print(f"download: listing session failed: {e}", file=sys.stderr)
        emit("download", {"failed": True, "error": f"listing: {type(e).__name__}: {e}", "sessions": 0})
        return 1
    host, port = target(a.target)
    retr_each, rates = [], []

    async def session():
        c = Pop3(a.timeout)
        try:
            marks = [time.perf_counter()]
            await c.connect(host, port)
            marks.append(time.perf_counter())
            await c.login(a.user, a.password)
            marks.append(time.perf_counter())
            n, _ = await c.stat(count)
            marks.append(time.perf_counter())
            ids = await c.uidl(n)
            marks.append(time.perf_counter())
            received = 0
            for number, unique in enumerate(ids, 1):
                if unique not in sizes:
                    raise ProtocolError(f"UIDL id {unique!r} of message {number} was not in the listing session")
                t = time.perf_counter()
                received += await c.retr(number, sizes[unique])
                retr_each.append(time.perf_counter() - t)
            marks.append(time.perf_counter())
            await c.quit()
            marks.append(time.perf_counter())
            rates.append(received / (marks[5] - marks[4]))
            return marks
        finally:
            c.close()

    def extra():
        return {"messages": count, "octets": octets, "retr_each": summary(retr_each),
                "retr_octets_per_s": [round(r) for r in rates],
                "retr_octets_per_s_p50": round(percentile(rates, 50)) if rates else None}

    return await sequential(a, "download", session, ["connect", "login", "stat", "uidl", "retr", "quit"], extra)


async def poll_session(c, host, port, user, password, expect):
    """connect, USER/PASS, STAT, UIDL, QUIT; perf_counter() at the start and after each."""
    marks = [time.perf_counter()]
    await c.connect(host, port)
    marks.append(time.perf_counter())
    await c.login(user, password)
    marks.append(time.perf_counter())
    count, _ = await c.stat(expect)
    marks.append(time.perf_counter())
    await c.uidl(count)
    marks.append(time.perf_counter())
    await c.quit()
    marks.append(time.perf_counter())
    return marks


async def m_poll(a):
    host, port = target(a.target)

    async def session():
        c = Pop3(a.timeout)
        try:
            return await poll_session(c, host, port, a.user, a.password, a.expect)
        finally:
            c.close()

    return await sequential(a, "poll", session, ["connect", "login", "stat", "uidl", "quit"],
                            lambda: {"messages": a.expect})


async def m_concurrent(a):
    host, port = target(a.target)
    users = [u for u in a.users.split(",") if u] if a.users else [a.user]
    durations, errors = [], {}
    failed = 0
    started = time.perf_counter()
    deadline = time.monotonic() + a.duration

    async def client(index):
        nonlocal failed
        user = users[index % len(users)]
        while time.monotonic() < deadline:
            c = Pop3(a.timeout)
            try:
                marks = await poll_session(c, host, port, user, a.password, a.expect)
                durations.append(marks[-1] - marks[0])
            except (ProtocolError, OSError) as e:
                failed += 1
                kind = re.sub(r"\d+", "#", f"{type(e).__name__}: {e}")[:160]
                errors[kind] = errors.get(kind, 0) + 1
                await asyncio.sleep(0.05)  # a server that refuses at once must not spin the loop
            finally:
                c.close()

    await asyncio.gather(*(client(i) for i in range(a.clients)))
    elapsed = time.perf_counter() - started
    ok = len(durations)
    out = {"clients": a.clients, "users": len(users), "duration_s": a.duration, "elapsed_s": round(elapsed, 3),
           "sessions": ok, "failed_sessions": failed, "sessions_per_s": round(ok / elapsed, 2),
           "session": summary(durations), "errors": errors, "messages": a.expect}
    s = out["session"]
    print(f"concurrent: {a.clients} clients over {len(users)} account(s), {elapsed:.1f} s: {ok} sessions "
          f"({out['sessions_per_s']}/s), {failed} failed; session p50 {s.get('p50_ms')} ms "
          f"p90 {s.get('p90_ms')} ms" + (f"; errors {errors}" if errors else ""), file=sys.stderr)
    emit("concurrent", out)
    return 1 if failed else 0


async def m_delete(a):
    host, port = target(a.target)
    dele_each = []
    marks = [time.perf_counter()]
    c = Pop3(a.timeout)
    error = None
    try:
        await c.connect(host, port)
        marks.append(time.perf_counter())
        await c.login(a.user, a.password)
        marks.append(time.perf_counter())
        count, _ = await c.stat(a.expect)
        marks.append(time.perf_counter())
        for number in range(1, count + 1):
            t = time.perf_counter()
            await c.command(f"DELE {number}")
            dele_each.append(time.perf_counter() - t)
        marks.append(time.perf_counter())
        await c.quit()
        marks.append(time.perf_counter())
        # Untimed: the UPDATE state must have removed them all.
        check = Pop3(a.timeout)
        try:
            await check.connect(host, port)
            await check.login(a.user, a.password)
            left, _ = await check.stat(None)
            await check.quit()
        finally:
            check.close()
        if left != 0:
            raise ProtocolError(f"{left} of the {count} deleted messages are still there after QUIT")
    except (ProtocolError, OSError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        c.close()
    phases = Phases(["connect", "login", "stat", "dele", "quit"])
    if error is None:
        phases.add(marks)
    out = {"messages": a.expect, "phases": phases.summaries() if error is None else {},
           "dele_each": summary(dele_each), "failed": error is not None}
    if error:
        out["error"] = error
        print(f"delete: FAILED: {error}", file=sys.stderr)
    else:
        p = out["phases"]
        print(f"delete: {a.expect} messages: DELE phase {p['dele']['p50_ms']} ms (each p50 "
              f"{out['dele_each']['p50_ms']} ms), QUIT {p['quit']['p50_ms']} ms, session {p['total']['p50_ms']} ms",
              file=sys.stderr)
    emit("delete", out)
    return 1 if error else 0


async def m_check(a):
    try:
        sizes, count, octets = await listing(a)
    except (ProtocolError, OSError) as e:
        print(f"check: {type(e).__name__}: {e}", file=sys.stderr)
        emit("check", {"failed": True, "error": str(e)})
        return 1
    print(f"check: {count} messages, {octets} octets", file=sys.stderr)
    emit("check", {"messages": count, "octets": octets, "failed": False})
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["download", "poll", "concurrent", "delete", "check"])
    ap.add_argument("--target", required=True, help="HOST:PORT of the POP3 server")
    ap.add_argument("--user", default="bench1")
    ap.add_argument("--users", default="", help="concurrent: comma-separated accounts, taken in turn")
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--expect", type=int, default=None, help="messages STAT must count")
    ap.add_argument("--iterations", type=int, default=10, help="sessions of download and poll")
    ap.add_argument("--max-time", type=float, default=600, help="download, poll: start no session after s")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=20, help="concurrent: seconds")
    ap.add_argument("--timeout", type=float, default=60, help="seconds for a connection or one reply")
    a = ap.parse_args()
    if a.mode in ("download", "poll", "concurrent", "delete") and a.expect is None:
        ap.error(f"{a.mode} needs --expect")
    fn = {"download": m_download, "poll": m_poll, "concurrent": m_concurrent, "delete": m_delete,
          "check": m_check}[a.mode]
    sys.exit(asyncio.run(fn(a)))


if __name__ == "__main__":
    main()
