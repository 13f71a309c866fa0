#!/usr/bin/env python3
"""Tables from one bench/imap.sh results directory: kubemail against Dovecot mdbox for the mixed
workload, login-fetch on the big INBOX, APPEND, delivery → IDLE, connect + LOGIN and memory per
idle selected connection; medians over the runs, with each run's figure; then the CPU split of
every step, SORT and THREAD on the big INBOX, COMPRESS=DEFLATE, the failed steps and the warnings our servers logged."""
import contextlib
import io
import pathlib
import re
import sys

from summary_common import (cell, cpu_rows, median, result_objects as results, section_cpu, section_failed_steps,
                            section_fill, section_refused_commands, server_log_problems)

OURS, DEV, PEER = "kubemail", "kubemail-dev", "dovecot"
NOCACHE = "kubemail-nocache"  # a second imap-frontend with --login-cache-ttl 0




def ratio(ours, peer):
    return f"{median(ours) / median(peer):.2f}" if ours and peer and median(peer) else "–"


def verdict(ok):
    return "–" if ok is None else ("met" if ok else "**not met**")


def labels_by_count(out, prefix, side):
    """{count: path} for files named <prefix>-c<count>-<side>.jsonl."""
    found = {}
    for path in out.glob(f"{prefix}-c*-{side}.jsonl"):
        match = re.fullmatch(rf"{prefix}-c(\d+)-{re.escape(side)}\.jsonl", path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def mixed(out, side):
    """{clients: [RESULT of each run]}."""
    return {clients: results(path) for clients, path in labels_by_count(out, "mixed", side).items()}


def failed_commands(run):
    return sum(n for name, n in run["errors"].items() if name != "SESSION")


def login_fetch(out, side):
    """{phase: {p50/p90/p99: [per batch]}}."""
    phases = {}
    for run in results(out / f"login-fetch-{side}.jsonl"):
        for phase, summary in run["phases"].items():
            for key in ("p50_ms", "p90_ms", "p99_ms"):
                if key in summary:
                    phases.setdefault(phase, {}).setdefault(key, []).append(summary[key])
    return phases


def connect_login(phases):
    """connect p50 + login p50 of each batch."""
    connect, login = phases.get("connect", {}).get("p50_ms", []), phases.get("login", {}).get("p50_ms", [])
    return [c + l for c, l in zip(connect, login)]


def section_mixed(out, rows):
    ours, peer = mixed(out, OURS), mixed(out, PEER)
    if not ours and not peer:
        return
    print("## 1. Mixed workload (`imapbench.py mixed`, imaptest's default state machine, one INBOX)\n")
    print("| clients | kubemail cmd/s | failed commands | aborted sessions | Dovecot mdbox cmd/s "
          "| failed commands | ours ÷ Dovecot |")
    print("|---|---|---|---|---|---|---|")
    for clients in sorted(set(ours) | set(peer)):
        o, p = ours.get(clients, []), peer.get(clients, [])
        oc, pc = [r["cmds_per_s"] for r in o], [r["cmds_per_s"] for r in p]
        of = [failed_commands(r) for r in o]
        osess = [r["errors"].get("SESSION", 0) for r in o]
        pf = [failed_commands(r) + r["errors"].get("SESSION", 0) for r in p]
        each = lambda counts: " / ".join(map(str, counts)) or "–"
        print(f"| {clients} | {cell(oc)} | {each(of)} | {each(osess)} | {cell(pc)} | {each(pf)} | {ratio(oc, pc)} |")
        ok = None
        if oc and pc:
            ok = median(oc) >= 1.5 * median(pc) and sum(of) == 0 and sum(osess) == 0
        rows.append((f"mixed, {clients} clients (cmd/s)", median(oc), median(pc), ratio(oc, pc),
                     "≥ 1.5× Dovecot, 0 failures", verdict(ok)))
    print("\nPer-command latency p50 / p99 (ms), median over runs; failed commands by command (all runs):\n")
    commands = ["CONNECT", "LOGIN", "LIST", "STATUS", "SELECT", "FETCH", "FETCH2", "STORE", "DELETE", "EXPUNGE",
                "APPEND", "LOGOUT"]
    print("| server | clients | " + " | ".join(commands) + " | failures |")
    print("|---|---|" + "---|" * len(commands) + "---|")
    for side, by_clients in ((OURS, ours), (PEER, peer)):
        for clients, runs in sorted(by_clients.items()):
            cells = []
            for command in commands:
                p50 = [r["latency"][command]["p50_ms"] for r in runs if r["latency"].get(command, {}).get("n")]
                p99 = [r["latency"][command]["p99_ms"] for r in runs if r["latency"].get(command, {}).get("n")]
                cells.append(f"{median(p50):.1f} / {median(p99):.0f}" if p50 else "–")
            errors = {}
            for r in runs:
                for name, n in r["errors"].items():
                    errors[name] = errors.get(name, 0) + n
            failures = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
            print(f"| {side} | {clients} | " + " | ".join(cells) + f" | {failures} |")
    sizes = [f"{r['mailbox_before']}→{r['mailbox_after']}" for by in (ours, peer) for rs in by.values() for r in rs]
    client_cpu = {side: [r["client_cpu_s"] for runs in by.values() for r in runs] for side, by in ((OURS, ours),
                                                                                                   (PEER, peer))}
    print(f"\nMailbox sizes before→after each run: {', '.join(sizes)}. Load client CPU seconds per run: "
          f"ours {', '.join(map(str, client_cpu[OURS]))}; Dovecot {', '.join(map(str, client_cpu[PEER]))}.\n")


# The services of each side whose CPU a command costs.
SERVICES = {OURS: ("postgres", "nats", "mailstore", "imap_frontend"), PEER: ("dovecot",)}


def cpu_by_label(out):
    """{label: [cpu.jsonl row of each run]}, in run order."""
    by_label = {}
    for row in cpu_rows(out):
        by_label.setdefault(row["label"], []).append(row)
    return by_label


def cpu_ms_per_command(cpu_row, run, side, services=None):
    """Server CPU milliseconds per command of one run, over `services` (all of the side's)."""
    commands = run.get("commands") or run["cmds_per_s"] * run["duration_s"]
    names = services or SERVICES[side]
    if not commands or any(f"{name}_cpu_s" not in cpu_row for name in names):
        return None
    return 1000 * sum(cpu_row[f"{name}_cpu_s"] for name in names) / commands


def p50s(runs, command):
    return [r["latency"][command]["p50_ms"] for r in runs if r["latency"].get(command, {}).get("n")]


def section_persistent(out, rows, prefix, title, target):
    """The persistent mixes of `prefix` (persistent: a user per client; shared: one INBOX)."""
    sides = {side: {count: results(path) for count, path in labels_by_count(out, prefix, side).items()}
             for side in (OURS, PEER)}
    if not sides[OURS] and not sides[PEER]:
        return
    cpu = cpu_by_label(out)
    print(f"## {title}\n")
    print("| clients | kubemail cmd/s | failures | Dovecot cmd/s | failures | ours ÷ Dovecot "
          "| CPU ms/command ours | Dovecot | FETCH p50 ms ours / Dovecot | STORE p50 ms ours / Dovecot |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for clients in sorted(set(sides[OURS]) | set(sides[PEER])):
        o, p = sides[OURS].get(clients, []), sides[PEER].get(clients, [])
        oc, pc = [r["cmds_per_s"] for r in o], [r["cmds_per_s"] for r in p]
        of = [failed_commands(r) + r["errors"].get("SESSION", 0) for r in o]
        pf = [failed_commands(r) + r["errors"].get("SESSION", 0) for r in p]
        ocpu = [c for c in (cpu_ms_per_command(row, r, OURS) for row, r in
                            zip(cpu.get(f"{prefix}-c{clients}-{OURS}", []), o)) if c is not None]
        pcpu = [c for c in (cpu_ms_per_command(row, r, PEER) for row, r in
                            zip(cpu.get(f"{prefix}-c{clients}-{PEER}", []), p)) if c is not None]
        each = lambda counts: " / ".join(map(str, counts)) or "–"
        latency = lambda command: f"{cell(p50s(o, command), 1)} / {cell(p50s(p, command), 1)}"
        print(f"| {clients} | {cell(oc)} | {each(of)} | {cell(pc)} | {each(pf)} | {ratio(oc, pc)} "
              f"| {cell(ocpu, 2)} | {cell(pcpu, 2)} | {latency('FETCH')} | {latency('STORE')} |")
        ok = None
        if oc and pc and ocpu and pcpu:
            ok = (median(oc) >= target * median(pc) and sum(of) == 0
                  and (prefix != "persistent" or median(ocpu) <= median(pcpu)))
        goal = f"≥ {target}× Dovecot, 0 failures" + (", CPU/command ≤ Dovecot" if prefix == "persistent" else "")
        rows.append((f"{title.split(' (')[0]}, {clients} clients (cmd/s)", median(oc), median(pc), ratio(oc, pc),
                     goal, verdict(ok)))
        if prefix == "persistent":
            for command in ("FETCH", "STORE"):
                op, pp = p50s(o, command), p50s(p, command)
                rows.append((f"{title.split(' (')[0]}, {clients} clients, {command} p50 (ms)", median(op),
                             median(pp), ratio(op, pp), "≤ Dovecot",
                             verdict(median(op) <= median(pp) if op and pp else None)))
    print()


COST_KINDS = ("fetch", "fetch2", "store", "expunge", "noop")
# Commands in one transaction of a bench/pg-floor script: the expunge round is three.
FLOOR_COMMANDS = {"expunge": 3}


def floor_ms_per_command(out, kind, cpu):
    """PostgreSQL's CPU milliseconds per command of the floor of `kind` (bench/pg-floor/ under
    pgbench), each run's."""
    path = out / f"cost-{kind}-floor.jsonl"
    if not path.exists():
        return []
    done = [int(m) for m in re.findall(r"number of transactions actually processed: (\d+)", path.read_text())]
    commands = FLOOR_COMMANDS.get(kind, 1)
    return [1000 * row["postgres_cpu_s"] / (n * commands)
            for row, n in zip(cpu.get(f"cost-{kind}-floor", []), done) if n and "postgres_cpu_s" in row]


def section_cost(out):
    """CPU per command of each kind (bench/imap-cost.py), split by service."""
    data = {(kind, side): results(out / f"cost-{kind}-{side}.jsonl") for kind in COST_KINDS for side in (OURS, PEER)}
    if not any(data.values()):
        return
    cpu = cpu_by_label(out)
    print("## The cost of each kind of command (`bench/imap-cost.py`, persistent clients on their own users)\n")
    print("CPU milliseconds per command, median over runs; the expunge round is three commands "
          "(STORE \\Deleted, EXPUNGE, APPEND). The floor is PostgreSQL's CPU for the least a design "
          "keeping each message's state in PostgreSQL rows does for the command (`bench/pg-floor/` under "
          "pgbench, as many clients, durable commits).\n")
    columns = SERVICES[OURS]
    print("| kind | kubemail cmd/s | p50 ms | " + " | ".join(columns) + " | ours total | Dovecot cmd/s | p50 ms "
          "| Dovecot CPU | ours ÷ Dovecot CPU | PostgreSQL floor | floor ÷ Dovecot CPU | our postgres ÷ floor |")
    print("|---|---|---|" + "---|" * len(columns) + "---|---|---|---|---|---|---|---|")
    for kind in COST_KINDS:
        o, p = data[(kind, OURS)], data[(kind, PEER)]
        orow, prow = cpu.get(f"cost-{kind}-{OURS}", []), cpu.get(f"cost-{kind}-{PEER}", [])
        latency = lambda runs: [median([s["p50_ms"] for s in r["latency"].values() if s.get("n")]) for r in runs
                                if r["latency"]]
        per = lambda side, runs, cpu_rows, names=None: [c for c in (cpu_ms_per_command(row, r, side, names)
                                                                     for row, r in zip(cpu_rows, runs)) if c is not None]
        split = [cell(per(OURS, o, orow, (name,)), 3) for name in columns]
        ours_total, peer_total = per(OURS, o, orow), per(PEER, p, prow)
        floor, ours_postgres = floor_ms_per_command(out, kind, cpu), per(OURS, o, orow, ("postgres",))
        print(f"| {kind} | {cell([r['cmds_per_s'] for r in o])} | {cell(latency(o), 2)} | " + " | ".join(split)
              + f" | {cell(ours_total, 3)} | {cell([r['cmds_per_s'] for r in p])} | {cell(latency(p), 2)} "
              f"| {cell(peer_total, 3)} | {ratio(ours_total, peer_total)} | {cell(floor, 3)} "
              f"| {ratio(floor, peer_total)} | {ratio(ours_postgres, floor)} |")
    print()


def section_login_fetch(out, rows):
    ours, nocache, peer = login_fetch(out, OURS), login_fetch(out, NOCACHE), login_fetch(out, PEER)
    if not ours and not peer:
        return
    messages = [r["messages"] for side in (OURS, PEER) for r in results(out / f"login-fetch-{side}.jsonl")]
    print("## 2. login-fetch: connect, LOGIN, SELECT INBOX, `FETCH 1:* (FLAGS)`, LOGOUT\n")
    print(f"Messages in the INBOX (FETCH responses, per batch): {', '.join(map(str, messages))}. "
          "Milliseconds, median of the batches' percentiles (each batch's p50 in brackets). "
          "kubemail: imap-frontend with its defaults (a login is remembered for 5 minutes, so only the "
          "first LOGIN of the run is verified with argon2id); \"cache off\": a second imap-frontend with "
          "`--login-cache-ttl 0`, every LOGIN verified.\n")
    print("| phase | kubemail p50 | p90 | p99 | kubemail, cache off p50 | Dovecot mdbox p50 | p90 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda d, k: f"{median(d[k]):.2f}" if d.get(k) else "–"
    for phase in ("connect", "login", "select", "fetch", "logout", "total"):
        o, n, p = ours.get(phase, {}), nocache.get(phase, {}), peer.get(phase, {})
        print(f"| {phase} | {cell(o.get('p50_ms', []), 2)} | {fmt(o, 'p90_ms')} | {fmt(o, 'p99_ms')} "
              f"| {cell(n.get('p50_ms', []), 2)} "
              f"| {cell(p.get('p50_ms', []), 2)} | {fmt(p, 'p90_ms')} | {fmt(p, 'p99_ms')} |")
    peer_total = peer.get("total", {}).get("p50_ms", [])
    for name, side in (("login-fetch total p50 (ms)", ours), ("… login cache off (ms)", nocache)):
        total = side.get("total", {}).get("p50_ms", [])
        if total or side is ours:
            rows.append((name, median(total), median(peer_total), ratio(total, peer_total), "≤ 8 ms",
                         verdict(median(total) <= 8 if total else None)))
    total = ours.get("total", {}).get("p50_ms", [])
    if total and peer_total:
        half = median(total) <= median(peer_total) / 2
        rows.append(("login-fetch total p50, half of Dovecot's", median(total), median(peer_total),
                     ratio(total, peer_total), "≤ 0.5×", verdict(half)))
    print()
    raw = {side: results(out / f"fetch-raw-{side}.jsonl") for side in (OURS, PEER)}
    if any(raw.values()):
        print("The same `FETCH 1:* (FLAGS)` read by `bench/imap-fetch-raw.py`, which does not parse the "
              "lines: the server's share of the fetch phase. Milliseconds from sending the command, "
              "median of the batches' p50 (each in brackets).\n")
        print("| | kubemail | Dovecot mdbox |")
        print("|---|---|---|")
        for key, name in (("first_octet_p50_ms", "first octet"), ("last_octet_p50_ms", "last octet")):
            values = {side: [r[key] for r in raw[side]] for side in raw}
            print(f"| {name} | {cell(values[OURS], 2)} | {cell(values[PEER], 2)} |")
        octets = {side: [r["octets"] for r in raw[side]] for side in raw}
        print(f"| octets | {cell(octets[OURS])} | {cell(octets[PEER])} |")
        last = {side: [r["last_octet_p50_ms"] for r in raw[side]] for side in raw}
        if last[OURS]:
            rows.append(("FETCH 1:* (FLAGS) last octet, raw reader (ms)", median(last[OURS]), median(last[PEER]),
                         ratio(last[OURS], last[PEER]), "–", "–"))
        print()


def section_append(out, rows):
    by_side = {side: labels_by_count(out, "append", side) for side in (OURS, PEER)}
    if not any(by_side.values()):
        return
    print("## 3. APPEND into a new mailbox (`imapbench.py append`)\n")
    print("| connections | kubemail msg/s | p50 / p99 ms | errors | Dovecot mdbox msg/s | p50 / p99 ms | errors "
          "| ours ÷ Dovecot |")
    print("|---|---|---|---|---|---|---|---|")
    for conns in sorted(set(by_side[OURS]) | set(by_side[PEER])):
        figures = {}
        for side in (OURS, PEER):
            runs = [run for r in results(by_side[side].get(conns, pathlib.Path("/nonexistent"))) for run in r["runs"]]
            rate = [run["msgs_per_s"] for run in runs]
            p50 = median([run["latency"]["p50_ms"] for run in runs if run["latency"].get("n")])
            p99 = median([run["latency"]["p99_ms"] for run in runs if run["latency"].get("n")])
            lat = f"{p50:.2f} / {p99:.1f}" if p50 is not None else "–"
            figures[side] = (rate, lat, " / ".join(str(run["errors"]) for run in runs) or "–")
        (orate, olat, oerr), (prate, plat, perr) = figures[OURS], figures[PEER]
        print(f"| {conns} | {cell(orate)} | {olat} | {oerr} | {cell(prate)} | {plat} | {perr} "
              f"| {ratio(orate, prate)} |")
        ok = median(orate) >= median(prate) if orate and prate else None
        rows.append((f"APPEND, {conns} connection(s) (msg/s)", median(orate), median(prate), ratio(orate, prate),
                     "≥ Dovecot", verdict(ok)))
    print()


def section_e2e(out, rows):
    sides = [
        (OURS, "kubemail distributed (smtp-ingress → NATS → delivery-queue → mailstore on PostgreSQL → imap-frontend)"),
        (DEV, "kubemail dev (one process, SQLite)"),
        (PEER, "Postfix → LMTP → Dovecot mdbox"),
    ]
    data = {side: results(out / f"e2e-{side}.jsonl") for side, _ in sides}
    if not any(data.values()):
        return
    print("## 4. Delivery → IDLE: SMTP 250 after DATA → `* N EXISTS` in an IDLE session (`e2e.py --method idle`)\n")
    print("| server | median ms | p90 ms | min / max ms | messages | errors |")
    print("|---|---|---|---|---|---|")
    for side, name in sides:
        runs = data[side]
        med = [r["median_ms"] for r in runs if "median_ms" in r]
        p90 = median([r["p90_ms"] for r in runs if "p90_ms" in r])
        lo = min((r["min_ms"] for r in runs if "min_ms" in r), default=None)
        hi = max((r["max_ms"] for r in runs if "max_ms" in r), default=None)
        extremes = f"{lo:.1f} / {hi:.1f}" if lo is not None else "–"
        print(f"| {name} | {cell(med, 1)} | {f'{p90:.1f}' if p90 is not None else '–'} | {extremes} "
              f"| {' / '.join(str(r['count']) for r in runs) or '–'} "
              f"| {' / '.join(str(r['errors']) for r in runs) or '–'} |")
    peer = [r["median_ms"] for r in data[PEER] if "median_ms" in r]
    for side, label, target in ((OURS, "distributed", 10), (DEV, "dev", 2)):
        med = [r["median_ms"] for r in data[side] if "median_ms" in r]
        rows.append((f"delivery → IDLE p50, {label} (ms)", median(med), median(peer), ratio(med, peer),
                     f"≤ {target} ms", verdict(median(med) <= target if med else None)))
    print()


def section_connect_login(out, rows):
    ours, nocache, peer = (connect_login(login_fetch(out, side)) for side in (OURS, NOCACHE, PEER))
    if not ours and not peer:
        return
    print("## 5. Connect (greeting) + LOGIN, p50 (login-fetch's first two phases, one client, sequential)\n")
    print("| server | connect + LOGIN p50 ms (each batch) |")
    print("|---|---|")
    print(f"| kubemail imap-frontend, defaults (login cache 5 min; argon2id hashes) | {cell(ours, 2)} |")
    if nocache:
        print(f"| kubemail imap-frontend, `--login-cache-ttl 0` (argon2id verified every time) | {cell(nocache, 2)} |")
    print(f"| Dovecot mdbox ({{PLAIN}} passwords, no auth cache) | {cell(peer, 2)} |")
    rows.append(("connect + LOGIN p50 (ms)", median(ours), median(peer), ratio(ours, peer), "≤ 2 ms",
                 verdict(median(ours) <= 2 if ours else None)))
    if nocache:
        rows.append(("… login cache off (ms)", median(nocache), median(peer), ratio(nocache, peer), "–", "–"))
    print()


def section_memory(out, rows):
    data = {side: [run for r in results(out / f"mem-{side}.jsonl") for run in r["runs"]] for side in (OURS, PEER)}
    if not any(data.values()):
        return
    print("## 6. Memory per idle selected connection (`idle-mem.py --proto imap --state selected`)\n")
    print("KiB per connection, (loaded − base) ÷ connections, 3 s after the last one opened. Ours: the "
          "imap-frontend process only (the mailstore, PostgreSQL and NATS are not counted), a fresh process each "
          "run. Dovecot: its whole process tree (one imap process per connection), restarted each run.\n")
    print("| server | connections (failed) | RSS | PSS | USS | processes per connection | base RSS KiB |")
    print("|---|---|---|---|---|---|---|")
    for side, name in ((OURS, "kubemail imap-frontend"), (PEER, "Dovecot mdbox")):
        runs = data[side]
        if not runs:
            print(f"| {name} | – | – | – | – | – | – |")
            continue
        get = lambda k: [run[k] for run in runs if run.get(k) is not None]
        conns = " / ".join(f"{run['conns']} ({run['failed']})" for run in runs)
        print(f"| {name} | {conns} | {cell(get('rss_kib_per_conn'), 1)} | {cell(get('pss_kib_per_conn'), 1)} "
              f"| {cell(get('uss_kib_per_conn'), 1)} | {median(get('procs_per_conn'))} "
              f"| {median([run['base']['rss_kib'] for run in runs]):,.0f} |")
    o = [run["pss_kib_per_conn"] for run in data[OURS] if run.get("pss_kib_per_conn") is not None]
    p = [run["pss_kib_per_conn"] for run in data[PEER] if run.get("pss_kib_per_conn") is not None]
    rows.append(("idle selected connection, PSS (KiB)", median(o), median(p), ratio(o, p), "≤ 32 KiB",
                 verdict(median(o) <= 32 if o else None)))
    print()


def section_sort(out, rows):
    data = {side: results(out / f"sort-{side}.jsonl") for side in (OURS, PEER)}
    if not any(data.values()):
        return
    print("## 7. SORT and THREAD on the big INBOX (`bench/imap-sort.py`)\n")
    print("Each command in a session of its own (connect, LOGIN, SELECT, the command, LOGOUT), timed from sending "
          "it to its tagged OK. *First*: the first time the command is sent in each run; only the first run's is "
          "cold, when every header is read (ours: from the mailstore into the frontend's summaries; Dovecot: into "
          "its cache). *p50*: the median of the repeats in each run. *Answer*: messages sorted, or threads at the "
          "top, which the two servers must agree on.\n")
    print("| command | kubemail first ms | p50 ms | answer | Dovecot mdbox first ms | p50 ms | answer |")
    print("|---|---|---|---|---|---|---|")
    modes = sorted({r["mode"] for side in data.values() for r in side})
    for mode in modes:
        get = lambda side, key: [r[key] for r in data[side] if r["mode"] == mode]
        o, p = get(OURS, "p50_ms"), get(PEER, "p50_ms")
        command = next(r["command"] for side in data.values() for r in side if r["mode"] == mode)
        print(f"| `{command}` | {cell(get(OURS, 'first_ms'), 1)} | {cell(o, 2)} | {median(get(OURS, 'answer_size'))} "
              f"| {cell(get(PEER, 'first_ms'), 1)} | {cell(p, 2)} | {median(get(PEER, 'answer_size'))} |")
        ok = median(o) <= median(p) if o and p else None
        rows.append((f"`{command}` p50 (ms)", median(o), median(p), ratio(o, p), "≤ Dovecot", verdict(ok)))
    print()


def section_compress(out, rows):
    data = {side: results(out / f"compress-{side}.jsonl") for side in (OURS, PEER)}
    if not any(data.values()):
        return
    print("## 8. COMPRESS=DEFLATE: `FETCH 1:* (BODY.PEEK[HEADER])` of the big INBOX (`bench/imap-compress.py`)\n")
    print("Octets received for the FETCH as they came off the socket, and inflated; the time from sending it to its "
          "tagged OK (p50 of the sessions in each run). Dovecot with its imap_zlib plugin.\n")
    print("| mode | kubemail octets on the wire | inflated | p50 ms | Dovecot mdbox octets on the wire | inflated "
          "| p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("headers-plain", "headers-deflate"):
        get = lambda side, key: [r[key] for r in data[side] if r["mode"] == mode]
        print(f"| {mode} | {cell(get(OURS, 'wire_octets'))} | {median(get(OURS, 'plain_octets')) or 0:,.0f} "
              f"| {cell(get(OURS, 'p50_ms'), 1)} | {cell(get(PEER, 'wire_octets'))} "
              f"| {median(get(PEER, 'plain_octets')) or 0:,.0f} | {cell(get(PEER, 'p50_ms'), 1)} |")
    o = [r["wire_octets"] for r in data[OURS] if r["mode"] == "headers-deflate"]
    p = [r["wire_octets"] for r in data[PEER] if r["mode"] == "headers-deflate"]
    rows.append(("header fetch with COMPRESS, octets on the wire", median(o), median(p), ratio(o, p), "≤ Dovecot",
                 verdict(median(o) <= median(p) if o and p else None)))
    print()


def section_problems(out):
    section_failed_steps(out)
    # The tool removes its mailbox before each APPEND run, whether it exists or not.
    section_refused_commands(
        sorted(out.glob("*.log")),
        expected=lambda step, command, reply: step.startswith("append-") and command.startswith("DELETE ")
        and "NONEXISTENT" in reply,
    )
    server_log_problems(out, ["mailstore.log", "imap-frontend.log", "smtp-ingress.log", "delivery-queue.log", "kubemail-dev.log"])

def main():
    out = pathlib.Path(sys.argv[1])
    print(f"# IMAP benchmark — {out.name}\n")
    for name in ("machine.txt", "durability.txt"):
        if (out / name).exists():
            print(f"`{name}`:\n```\n{(out / name).read_text().strip()}\n```\n")
    rows = []
    details = io.StringIO()  # the sections fill `rows`, which go first
    with contextlib.redirect_stdout(details):
        section_fill(out, (OURS, PEER))
        section_mixed(out, rows)
        section_login_fetch(out, rows)
        section_append(out, rows)
        section_e2e(out, rows)
        section_connect_login(out, rows)
        section_memory(out, rows)
        section_sort(out, rows)
        section_compress(out, rows)
        section_persistent(out, rows, "persistent", "Persistent mix on a user per client "
                           "(`mixed --persistent --users N`, each user its own INBOX)", 1.5)
        section_persistent(out, rows, "shared", "Persistent mix on one shared INBOX (`mixed --persistent`)", 1.0)
        section_cost(out)
    print("## Against the targets (medians)\n")
    print("| measurement | kubemail | Dovecot mdbox | ours ÷ Dovecot | target | |")
    print("|---|---|---|---|---|---|")
    for name, ours, peer, r, target, ok in rows:
        fmt = lambda v: "–" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:,.2f}")
        print(f"| {name} | {fmt(ours)} | {fmt(peer)} | {r} | {target} | {ok} |")
    print()
    print(details.getvalue(), end="")
    section_cpu(out, digits=1)
    section_problems(out)


if __name__ == "__main__":
    main()
