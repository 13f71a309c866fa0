#!/usr/bin/env python3
"""What one kind of IMAP command costs: persistent clients, each logged in as its own user with
its INBOX selected, send only that kind for --duration seconds, as the mixed workload forms it
(`imapbench.py mixed`). Run under bench/lib.sh's `measure`, the CPU seconds of every server per
run divided by the commands sent give the CPU per command of that kind.

    python3 bench/imap-cost.py PATH/TO/imapbench.py --kind fetch --target HOST:PORT \
        --user-prefix user --user-suffix @bench.test --clients 10 --duration 20 --corpus corpus.mbox

Kinds:
  fetch    FETCH of up to 100 messages, one to four of UID FLAGS ENVELOPE INTERNALDATE BODY
           BODYSTRUCTURE RFC822.SIZE or BODY.PEEK[HEADER.FIELDS (…)]
  fetch2   FETCH of one message, UID and one body section (header, whole, part 1, text)
  store    STORE of flags on up to 50 messages, with and without .SILENT
  expunge  a round of STORE +FLAGS.SILENT (\\Deleted) on one message, EXPUNGE, and APPEND of a
           corpus message, so the mailbox keeps its size (three commands)
  noop     NOOP

Prints `RESULT {json}` (commands per second, latency per command, failures) on stdout.
"""
import argparse
import asyncio
import importlib.util
import random
import sys
import time

KINDS = ("fetch", "fetch2", "store", "expunge", "noop")


def load_imapbench(path):
    spec = importlib.util.spec_from_file_location("imapbench", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


class Cost:
    def __init__(self, ib, a, msgs):
        self.ib, self.a, self.msgs = ib, a, msgs
        self.lat, self.err = {}, {}
        self.deadline = 0.0
        # The mixed workload's forms of each command.
        self.mixed = ib.Mixed(a, msgs)

    async def cmd(self, c, name, text, literal=None):
        start = time.monotonic()
        status, _ = await c.command(text, literal=literal, keep=False)
        if time.monotonic() <= self.deadline:
            self.lat.setdefault(name, []).append(time.monotonic() - start)
            if status != "OK":
                self.err[name] = self.err.get(name, 0) + 1

    async def round(self, rng, c):
        ib, kind = self.ib, self.a.kind
        if kind == "noop":
            await self.cmd(c, "NOOP", "NOOP")
        elif kind == "fetch":
            fields = []
            for _ in range(rng.randint(1, 4)):
                if rng.randrange(4):
                    fields.append(rng.choice(ib.FETCH_FIELDS))
                else:
                    fields.append("BODY.PEEK[HEADER.FIELDS (%s)]" % " ".join(
                        rng.sample(ib.HDR_FIELDS, rng.randint(1, 4))))
            await self.cmd(c, "FETCH", f"FETCH {self.mixed.rand_range(rng, c.exists, 100)} ({' '.join(fields)})")
        elif kind == "fetch2":
            await self.cmd(c, "FETCH2", f"FETCH {rng.randint(1, c.exists)} (UID {rng.choice(ib.FETCH2_FIELDS)})")
        elif kind == "store":
            op = rng.choice(["+", "-", ""])
            silent = ".SILENT" if rng.random() < 0.5 else ""
            flags = " ".join(rng.sample(ib.FLAGS, rng.randint(1, 3)))
            most = c.exists if c.exists < 10 else min(c.exists // 5, 50)
            await self.cmd(c, "STORE", f"STORE {self.mixed.rand_range(rng, c.exists, most)} {op}FLAGS{silent} ({flags})")
        else:
            await self.cmd(c, "DELETE", f"STORE {rng.randint(1, c.exists)} +FLAGS.SILENT (\\Deleted)")
            await self.cmd(c, "EXPUNGE", "EXPUNGE")
            await self.cmd(c, "APPEND", "APPEND INBOX ()", literal=rng.choice(self.msgs))

    async def client(self, index):
        a = self.a
        rng = random.Random(a.seed * 1000 + index)
        user = f"{a.user_prefix}{index % a.users + 1}{a.user_suffix}"
        host, port = self.ib.parse_target(a.target)
        c = self.ib.Imap()
        await c.connect(host, port)
        try:
            await c.login(user, a.password)
            await c.select("INBOX")
            while time.monotonic() < self.deadline and c.exists > 0:
                await self.round(rng, c)
        finally:
            await c.logout()

    async def run(self):
        self.deadline = time.monotonic() + self.a.duration
        clients = [self.client(i) for i in range(self.a.clients)]
        await asyncio.wait_for(asyncio.gather(*clients), self.a.duration + 120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("imapbench", help="path of the peers' imapbench.py")
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--user-prefix", default="user")
    ap.add_argument("--user-suffix", default="")
    ap.add_argument("--users", type=int, default=None, help="default: one per client")
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    a.users = a.users or a.clients
    ib = load_imapbench(a.imapbench)
    cost = Cost(ib, a, ib.load_corpus(a.corpus))
    asyncio.run(cost.run())
    commands = sum(len(v) for v in cost.lat.values())
    print(f"cost {a.kind}: {a.clients} clients, {commands / a.duration:.0f} cmd/s, errors={cost.err}", file=sys.stderr)
    ib.result("cost", {"kind": a.kind, "clients": a.clients, "duration_s": a.duration, "commands": commands,
                       "cmds_per_s": round(commands / a.duration, 1), "errors": cost.err,
                       "latency": {k: ib.lat_summary(v) for k, v in cost.lat.items()}})


if __name__ == "__main__":
    main()
