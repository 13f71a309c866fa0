#!/usr/bin/env python3
"""Tables from one bench/delivery.sh results directory: queue → mailbox deliveries per second by
worker count, and the whole pipeline (SMTP accepted → visible in the mailbox) against Postfix →
Dovecot; medians over the runs, with each run's figure."""
import json
import pathlib
import statistics
import sys


def lines(path, prefix=""):
    """JSON objects of a file, one per line (after `prefix`, e.g. "RESULT ")."""
    if not path.exists():
        return []
    return [json.loads(line[len(prefix):]) for line in path.read_text().splitlines() if line.startswith(prefix + "{")]


def cell(values):
    if not values:
        return "–"
    return f"{statistics.median(values):,.0f} ({' / '.join(f'{v:,.0f}' for v in values)})"


def pipeline(out, label):
    """{sessions: [complete msgs/s of each run]}."""
    by_sessions = {}
    for result in lines(out / f"pipeline-{label}.jsonl", "RESULT "):
        for row in result["rows"]:
            by_sessions.setdefault(row["sessions"], []).extend(run["complete_msgs_per_s"] for run in row["runs"])
    return by_sessions


def main():
    out = pathlib.Path(sys.argv[1])
    print(f"# Delivery benchmark — {out.name}\n")
    for name in ("machine.txt", "durability.txt"):
        if (out / name).exists():
            print(f"`{name}`:\n```\n{(out / name).read_text().strip()}\n```\n")
    print("## Queue → mailbox on PostgreSQL (local deliveries per second)\n")
    print("| delivery-queue replicas | deliveries/s |")
    print("|---|---|")
    by_workers = {}
    for row in lines(out / "queue-drain.jsonl"):
        by_workers.setdefault(row["label"], []).append(row["msgs_per_s"])
    for label, rates in sorted(by_workers.items()):
        print(f"| {label.removeprefix('workers-')} | {cell(rates)} |")
    ours, peer = pipeline(out, "kubemail"), pipeline(out, "postfix-dovecot")
    print("\n## SMTP accepted → visible in the mailbox (messages per second, smtp-source, one connection per message)\n")
    print("| sessions | kubemail | Postfix → Dovecot | ours ÷ peer |")
    print("|---|---|---|---|")
    for sessions in sorted(set(ours) | set(peer)):
        o, p = ours.get(sessions, []), peer.get(sessions, [])
        ratio = f"{statistics.median(o) / statistics.median(p):.2f}" if o and p else "–"
        print(f"| {sessions} | {cell(o)} | {cell(p)} | {ratio} |")


if __name__ == "__main__":
    main()
