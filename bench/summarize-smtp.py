#!/usr/bin/env python3
"""Tables from one bench/smtp.sh results directory: acceptance throughput per session count
(median over the runs, with each run's figure) and memory per idle connection."""
import json
import pathlib
import statistics
import sys


def results(path):
    """The RESULT objects of a file of smtp-bench.py or idle-mem.py outputs."""
    if not path.exists():
        return []
    return [json.loads(line.split(" ", 1)[1]) for line in path.read_text().splitlines() if line.startswith("RESULT ")]


def throughput(out, label):
    """{sessions: [msgs/s of each run]} for one target."""
    by_sessions = {}
    for result in results(out / f"smtp-{label}.jsonl"):
        for row in result["rows"]:
            by_sessions.setdefault(row["sessions"], []).extend(run["msgs_per_s"] for run in row["runs"])
    return by_sessions


def cell(values):
    if not values:
        return "–"
    runs = " / ".join(f"{v:,.0f}" for v in values)
    return f"{statistics.median(values):,.0f} ({runs})"


def main():
    out = pathlib.Path(sys.argv[1])
    ours, fsync, postfix, discard, sink = (
        throughput(out, label)
        for label in ("kubemail", "kubemail-fsync", "postfix-hold", "kubemail-discard", "smtp-sink")
    )
    print(f"# SMTP benchmark — {out.name}\n")
    for name in ("machine.txt", "durability.txt"):
        if (out / name).exists():
            print(f"`{name}`:\n```\n{(out / name).read_text().strip()}\n```\n")
    ratio = lambda a, b: f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "–"
    print("## Messages durably accepted per second (smtp-source, one connection per message)\n")
    print(
        "| sessions | kubemail (NATS default sync) | kubemail (NATS fsync always) "
        "| Postfix accept-only (hold queue, fsync) | ours ÷ Postfix | fsync'd ÷ Postfix |"
    )
    print("|---|---|---|---|---|---|")
    for sessions in sorted(ours):
        o, f, p = ours[sessions], fsync.get(sessions, []), postfix.get(sessions, [])
        print(f"| {sessions} | {cell(o)} | {cell(f)} | {cell(p)} | {ratio(o, p)} | {ratio(f, p)} |")
    print("\n## Protocol overhead: accepted and discarded, per second\n")
    print("| sessions | kubemail --discard-accepted-mail | smtp-sink | ours ÷ smtp-sink |")
    print("|---|---|---|---|")
    for sessions in sorted(discard):
        d, s = discard[sessions], sink.get(sessions, [])
        print(f"| {sessions} | {cell(d)} | {cell(s)} | {ratio(d, s)} |")
    print("\n## Memory per idle connection after EHLO (KiB, PSS; each run on a fresh server)\n")
    print("| server | median | runs |")
    print("|---|---|---|")
    for label in ("kubemail", "postfix"):
        runs = [run["pss_kib_per_conn"] for r in results(out / f"mem-{label}.jsonl") for run in r["runs"]]
        if runs:
            print(f"| {label} | {statistics.median(runs):.1f} | {' / '.join(f'{v:.1f}' for v in runs)} |")


if __name__ == "__main__":
    main()
