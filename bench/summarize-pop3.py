#!/usr/bin/env python3
"""Tables from one bench/pop3.sh results directory: kubemail's POP3 against Dovecot's (mdbox) for
the download, the poll, concurrent polls and DELE; medians over the runs with each run's figure
and the ratio kubemail ÷ Dovecot; then the CPU seconds of every step and per session, the failed
steps and the warnings our servers logged.

  bench/summarize-pop3.py bench/results/pop3-<time> > summary.md
"""
import contextlib
import io
import pathlib
import re
import statistics
import sys

from summary_common import cpu_rows, result_objects, section_cpu, section_failed_steps, section_fill, server_log_problems

OURS, PEER = "kubemail", "dovecot"
SIDES = ((OURS, "kubemail"), (PEER, "Dovecot mdbox"))
# The process trees that serve each side, as cpu.jsonl names them.
TREES = {OURS: ("postgres", "nats", "mailstore", "imap_frontend"), PEER: ("dovecot",)}


def results(path, keep_failed=False):
    """The RESULT objects of a pop3-load.py or imapbench.py output file; those of failed runs
    only with keep_failed."""
    found = result_objects(path)
    return found if keep_failed else [r for r in found if not r.get("failed")]


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits):
    return "–" if value is None else f"{value:,.{digits}f}"


def cell(values, digits=1):
    """The median and each run's figure, e.g. `21.4 (20.3 / 21.4 / 23.2)`."""
    if not values:
        return "–"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(median(values), digits)} ({' / '.join(fmt(v, digits) for v in values)})"


def ratio(ours, peer):
    o, p = median(ours), median(peer)
    return f"{o / p:.2f}" if o is not None and p else "–"


def phase_values(runs, phase, key="p50_ms"):
    return [r["phases"][phase][key] for r in runs if r.get("phases", {}).get(phase, {}).get(key) is not None]


def failed_runs(out, label):
    """How many runs of LABEL failed on each side."""
    return {side: sum(1 for r in results(out / f"{label}-{side}.jsonl", keep_failed=True) if r.get("failed"))
            for side, _ in SIDES}


def note_failures(out, label):
    failed = failed_runs(out, label)
    if any(failed.values()):
        print(f"**Failed runs, left out of the medians:** kubemail {failed[OURS]}, Dovecot {failed[PEER]} "
              "(see failures.txt).\n")


def phase_table(out, label, phases, keys):
    runs = {side: results(out / f"{label}-{side}.jsonl") for side, _ in SIDES}
    if not any(runs.values()):
        return runs
    head = " | ".join(f"kubemail {k.removesuffix('_ms')}" for k in keys) + " | " + \
        " | ".join(f"Dovecot {k.removesuffix('_ms')}" for k in keys) + " | ratio (" + keys[0].removesuffix("_ms") + ")"
    print(f"| phase | {head} |")
    print("|---|" + "---|" * (2 * len(keys) + 1))
    for phase in phases:
        cells = []
        for side, _ in SIDES:
            for i, key in enumerate(keys):
                values = phase_values(runs[side], phase, key)
                cells.append(cell(values, 2) if i == 0 else fmt(median(values), 2))
        r = ratio(phase_values(runs[OURS], phase, keys[0]), phase_values(runs[PEER], phase, keys[0]))
        print(f"| {phase} | " + " | ".join(cells) + f" | {r} |")
    print()
    return runs


def cpu_split(out, label, count, prefix=""):
    """One line per side: CPU ms per session, by process tree."""
    lines = []
    for side, name in SIDES:
        rows = [row for row in cpu_rows(out) if row["label"] == f"{label}-{side}"]
        runs = results(out / f"{label}-{side}.jsonl", keep_failed=True)
        if not rows or len(rows) != len(runs):
            continue
        per_tree = {}
        for row, run in zip(rows, runs):
            n = count(run)
            if run.get("failed") or not n:
                continue
            for tree in TREES[side] + ("client",):
                value = row.get(f"{tree}_cpu_s")
                if value is not None:
                    per_tree.setdefault(tree, []).append(value * 1000 / n)
        if per_tree:
            parts = [f"{tree.replace('_', '-')} {median(v):.2f}" for tree, v in per_tree.items() if tree != "client"]
            total = sum(median(v) for tree, v in per_tree.items() if tree != "client")
            lines.append(f"{name} {total:.2f} ({', '.join(parts)}; load tool {median(per_tree['client']):.2f})"
                         if "client" in per_tree else f"{name} {total:.2f} ({', '.join(parts)})")
    if lines:
        print(f"{prefix}CPU milliseconds per session, median over runs (server process trees, from /proc): "
              + "; ".join(lines) + ".\n")


def section_download(out, rows):
    if not any((out / f"download-{side}.jsonl").exists() for side, _ in SIDES):
        return
    sample = next((r for side, _ in SIDES for r in results(out / f"download-{side}.jsonl")), {})
    print(f"## 1. Download: connect, USER/PASS, STAT, UIDL, RETR of all {sample.get('messages', '?')} messages "
          f"({sample.get('octets', 0):,} octets), QUIT; no DELE\n")
    print("Milliseconds; per phase the median over runs of each run's p50 (each run's p50 in brackets). "
          "Every RETR checked against LIST's size.\n")
    note_failures(out, "download")
    runs = phase_table(out, "download", ["connect", "login", "stat", "uidl", "retr", "quit", "total"],
                       ["p50_ms", "p90_ms"])
    rate = {side: [r["retr_octets_per_s_p50"] / 1e6 for r in runs[side] if r.get("retr_octets_per_s_p50")]
            for side, _ in SIDES}
    each = {side: [r["retr_each"]["p50_ms"] for r in runs[side] if r.get("retr_each", {}).get("n")]
            for side, _ in SIDES}
    print("| | kubemail | Dovecot mdbox | ratio |")
    print("|---|---|---|---|")
    print(f"| RETR phase, MB/s (10^6 octets of message per second; p50 of the run's sessions) "
          f"| {cell(rate[OURS])} | {cell(rate[PEER])} | {ratio(rate[OURS], rate[PEER])} |")
    print(f"| one RETR, p50 ms | {cell(each[OURS], 3)} | {cell(each[PEER], 3)} | {ratio(each[OURS], each[PEER])} |")
    print()
    cpu_split(out, "download", lambda r: r.get("sessions"))
    total = {side: phase_values(runs[side], "total") for side, _ in SIDES}
    rows.append(("download session p50 (ms)", total[OURS], total[PEER], "lower"))
    rows.append(("… its RETR phase (MB/s)", rate[OURS], rate[PEER], "higher"))
    rows.append(("… one RETR p50 (ms)", each[OURS], each[PEER], "lower"))
    first = {side: results(out / f"download-first-{side}.jsonl") for side, _ in SIDES}
    if any(first.values()):
        print("The first download session, kept apart (one session each: its QUIT marks the messages \\Seen, "
              "and caches are cold):\n")
        print("| phase | kubemail ms | Dovecot mdbox ms | ratio |")
        print("|---|---|---|---|")
        for phase in ("connect", "login", "stat", "uidl", "retr", "quit", "total"):
            o, p = phase_values(first[OURS], phase), phase_values(first[PEER], phase)
            print(f"| {phase} | {cell(o, 2)} | {cell(p, 2)} | {ratio(o, p)} |")
        print()
        rows.append(("first download session, QUIT marking \\Seen (ms)", phase_values(first[OURS], "total"),
                     phase_values(first[PEER], "total"), "lower"))


def section_poll(out, rows):
    if not any((out / f"poll-{side}.jsonl").exists() for side, _ in SIDES):
        return
    sample = next((r for side, _ in SIDES for r in results(out / f"poll-{side}.jsonl")), {})
    print(f"## 2. Poll: connect, USER/PASS, STAT, UIDL, QUIT on an INBOX of {sample.get('messages', 0):,} messages\n")
    print("Milliseconds, sessions one after the other; median over runs of each run's p50 and p90.\n")
    note_failures(out, "poll")
    runs = phase_table(out, "poll", ["connect", "login", "stat", "uidl", "quit", "total"], ["p50_ms", "p90_ms"])
    cpu_split(out, "poll", lambda r: r.get("sessions"))
    for key, name in (("p50_ms", "p50"), ("p90_ms", "p90")):
        rows.append((f"poll session {name} (ms)", phase_values(runs[OURS], "total", key),
                     phase_values(runs[PEER], "total", key), "lower"))
    for phase in ("connect", "login", "uidl"):
        rows.append((f"… its {phase} p50 (ms)", phase_values(runs[OURS], phase), phase_values(runs[PEER], phase),
                     "lower"))


def section_concurrent(out, rows):
    counts = set()
    for side, _ in SIDES:
        for path in out.glob(f"concurrent-c*-{side}.jsonl"):
            match = re.fullmatch(rf"concurrent-c(\d+)-{side}\.jsonl", path.name)
            if match:
                counts.add(int(match.group(1)))
    if not counts:
        return
    sample = next((r for c in counts for side, _ in SIDES
                   for r in results(out / f"concurrent-c{c}-{side}.jsonl", keep_failed=True)), {})
    print(f"## 3. Concurrent polls: each client repeats the poll session for {sample.get('duration_s', '?')} s, "
          f"clients spread over {sample.get('users', '?')} accounts of {sample.get('messages', 0):,} messages\n")
    print("Sessions per second counts the sessions completed and checked; a failed session (a reply not "
          "+OK, a wrong count, a timeout, a closed connection) is not counted in it.\n")
    print("| clients | kubemail sessions/s | failed | session p50 / p90 ms | Dovecot sessions/s | failed "
          "| session p50 / p90 ms | ratio (sessions/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for clients in sorted(counts):
        figures = {}
        for side, _ in SIDES:
            runs = results(out / f"concurrent-c{clients}-{side}.jsonl", keep_failed=True)
            rate = [r["sessions_per_s"] for r in runs]
            failed = " / ".join(str(r["failed_sessions"]) for r in runs) or "–"
            p50 = median([r["session"]["p50_ms"] for r in runs if r["session"].get("n")])
            p90 = median([r["session"]["p90_ms"] for r in runs if r["session"].get("n")])
            figures[side] = (rate, failed, f"{fmt(p50, 1)} / {fmt(p90, 1)}")
        (orate, ofail, olat), (prate, pfail, plat) = figures[OURS], figures[PEER]
        print(f"| {clients} | {cell(orate)} | {ofail} | {olat} | {cell(prate)} | {pfail} | {plat} "
              f"| {ratio(orate, prate)} |")
        rows.append((f"concurrent polls, {clients} clients (sessions/s)", orate, prate, "higher"))
    print()
    errors = {}
    for clients in sorted(counts):
        for side, name in SIDES:
            for r in results(out / f"concurrent-c{clients}-{side}.jsonl", keep_failed=True):
                for kind, n in r.get("errors", {}).items():
                    key = (clients, name, kind)
                    errors[key] = errors.get(key, 0) + n
    if errors:
        print("Failed sessions by kind (all runs):\n")
        print("| clients | server | count | error |")
        print("|---|---|---|---|")
        for (clients, name, kind), n in sorted(errors.items()):
            print(f"| {clients} | {name} | {n} | `{kind}` |")
        print()
    for clients in sorted(counts):
        cpu_split(out, f"concurrent-c{clients}", lambda r: r.get("sessions"), f"{clients} clients: ")


def section_delete(out, rows):
    if not any((out / f"delete-{side}.jsonl").exists() for side, _ in SIDES):
        return
    sample = next((r for side, _ in SIDES for r in results(out / f"delete-{side}.jsonl")), {})
    print(f"## 4. Delete: connect, USER/PASS, STAT, DELE of each of {sample.get('messages', '?')} messages, "
          "QUIT (the UPDATE state removes them)\n")
    print("Milliseconds, one session per run (refilled by APPEND before each); the DELE phase is all the DELEs, "
          "one after the other. A later session checks that none is left.\n")
    note_failures(out, "delete")
    runs = phase_table(out, "delete", ["connect", "login", "stat", "dele", "quit", "total"], ["p50_ms"])
    each = {side: [r["dele_each"]["p50_ms"] for r in runs[side] if r.get("dele_each", {}).get("n")]
            for side, _ in SIDES}
    print(f"One DELE, p50 ms: kubemail {cell(each[OURS], 3)}, Dovecot {cell(each[PEER], 3)}.\n")
    for phase, name in (("dele", "all DELEs"), ("quit", "QUIT, the UPDATE state"), ("total", "whole session")):
        rows.append((f"delete: {name} (ms)", phase_values(runs[OURS], phase), phase_values(runs[PEER], phase),
                     "lower"))


def section_problems(out):
    section_failed_steps(out)
    refused = {}
    for path in sorted(out.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("NOT OK: "):
                key = (path.stem, re.sub(r"\d+", "#", line)[:200])
                refused.setdefault(key, [0, line])[0] += 1
    if refused:
        print("## IMAP commands not answered OK while filling (one example per kind)\n")
        for (step, _), (count, line) in sorted(refused.items()):
            print(f"- {step}: {count}× `{line[:300]}`")
        print()
    server_log_problems(out, ["mailstore.log", "imap-frontend.log"])

def main():
    out = pathlib.Path(sys.argv[1])
    print(f"# POP3 benchmark — {out.name}\n")
    for name in ("machine.txt", "durability.txt"):
        if (out / name).exists():
            print(f"`{name}`:\n```\n{(out / name).read_text().strip()}\n```\n")
    rows = []
    details = io.StringIO()  # the sections fill `rows`, which go first
    with contextlib.redirect_stdout(details):
        section_fill(out, [side for side, _ in SIDES])
        section_download(out, rows)
        section_poll(out, rows)
        section_concurrent(out, rows)
        section_delete(out, rows)
    print("## kubemail against Dovecot (medians over runs)\n")
    print("| measurement | kubemail | Dovecot mdbox | kubemail ÷ Dovecot | better |")
    print("|---|---|---|---|---|")
    for name, ours, peer, better in rows:
        shown = lambda v: "–" if median(v) is None else (f"{median(v):,.0f}" if median(v) >= 100 else f"{median(v):,.2f}")
        print(f"| {name} | {shown(ours)} | {shown(peer)} | {ratio(ours, peer)} | {better} |")
    print()
    print(details.getvalue(), end="")
    section_cpu(out, digits=2)
    section_problems(out)


if __name__ == "__main__":
    main()
