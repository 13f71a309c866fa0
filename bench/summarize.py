#!/usr/bin/env python3
"""Markdown summary of bench/mailstore.sh runs.

  summarize.py RESULTS_DIR               full tables of one run (ours, Dovecot, ratio, target, CPU)
  summarize.py RESULTS_DIR RESULTS_DIR…  one line per figure across runs, with the medians

Ratios are always ours ÷ peer, each from one run: above 1 is better for throughput, below 1 is
better for latency.
"""
import json
import statistics
import sys
from pathlib import Path

SIZES = [(4096, "4 KiB"), (102400, "100 KiB")]
CLIENTS = [1, 16]
FORMATS = ["maildir", "mdbox"]
DELIVER_TARGET = (4096, 16, 2000.0)  # size, clients, deliveries/s
SELECT_TARGET_MS = 10.0


def json_lines(path):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.removeprefix("RESULT ").strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def summary_line(path, bench):
    return next((r for r in json_lines(path) if r.get("bench") == bench), None)


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(ours, peer):
    return "–" if not ours or not peer else f"{ours / peer:.2f}"


def login_fetch(out, fmt_name):
    """Median over batches of each phase's p50/p90/p99, or None when no batch ran."""
    batches = [r for b in (1, 2, 3) for r in json_lines(out / f"dovecot-{fmt_name}-login-fetch-{b}.jsonl")
               if r.get("mode") == "login-fetch"]
    if not batches:
        return None
    phases = {}
    for phase in ("connect", "login", "select", "fetch", "logout", "total"):
        phases[phase] = {q: statistics.median(b["phases"][phase][q] for b in batches)
                         for q in ("p50_ms", "p90_ms", "p99_ms")}
    phases["messages"] = batches[0]["messages"]
    phases["batches"] = len(batches)
    return phases


def figures(out):
    """The headline figures of one run: {(metric, who): value}."""
    found = {}
    for size, label in SIZES:
        for clients in CLIENTS:
            metric = f"Deliver {label} × {clients} client{'s' if clients > 1 else ''} (/s)"
            ours = summary_line(out / f"ours-deliver-{size}-c{clients}.jsonl", "deliver-summary")
            found[(metric, "ours")] = ours and ours["median_deliveries_per_s"]
            for f in FORMATS:
                peer = summary_line(out / f"dovecot-{f}-lmtp-{size}-c{clients}.jsonl", "lmtp-deliver-summary")
                found[(metric, f)] = peer and peer["median_deliveries_per_s"]
    metric = "SELECT + UID/FLAGS, 10k messages, p50 (ms)"
    ours = summary_line(out / "ours-select.jsonl", "select")
    found[(metric, "ours")] = ours and ours["p50_ms"]
    for f in FORMATS:
        lf = login_fetch(out, f)
        found[(metric, f)] = lf and lf["select"]["p50_ms"] + lf["fetch"]["p50_ms"]
    return found


def across_runs(outs):
    runs = [figures(out) for out in outs]
    metrics = list(dict.fromkeys(metric for metric, _ in runs[0]))
    print(f"| figure | who | {' | '.join(out.name for out in outs)} | median |")
    print("|---|---|" + "---|" * len(outs) + "---|")
    for metric in metrics:
        for who in ["ours"] + FORMATS:
            values = [run.get((metric, who)) for run in runs]
            present = [v for v in values if v]
            if not present:
                continue
            print(f"| {metric} | {who if who == 'ours' else 'Dovecot ' + who} | "
                  + " | ".join(fmt(v, 1) for v in values) + f" | {fmt(statistics.median(present), 1)} |")
            if who != "ours":
                ratios = [ours / peer if ours and peer else None
                          for ours, peer in zip((run.get((metric, "ours")) for run in runs), values)]
                present = [r for r in ratios if r]
                print(f"| {metric} | ours ÷ {who} | " + " | ".join(fmt(r, 2) for r in ratios)
                      + f" | {fmt(statistics.median(present), 2) if present else '–'} |")


def main():
    if len(sys.argv) > 2:
        across_runs([Path(arg) for arg in sys.argv[1:]])
        return
    out = Path(sys.argv[1])
    formats = [f for f in FORMATS if any(out.glob(f"dovecot-{f}-*.jsonl"))]
    print(f"# mailstore benchmark — {out.name}\n")
    for name in ("machine.txt", "postgres-settings.txt", "peer-status.txt"):
        path = out / name
        if path.exists() and path.read_text().strip():
            print(f"`{name}`:\n```\n{path.read_text().strip()}\n```\n")

    print("## Deliver throughput (median of runs)\n")
    print("Ours: `mailstore-bench deliver` (gRPC Deliver → PostgreSQL). Dovecot: `lmtp-load.py` "
          "(LMTP, persistent connections). Same message sizes, counts, concurrency and recipients.\n")
    head = "| size | clients | ours deliveries/s | ours p50 / p99 ms |"
    rule = "|---|---|---|---|"
    for f in formats:
        head += f" Dovecot {f} /s | {f} p50 / p99 ms | ours ÷ {f} |"
        rule += "---|---|---|"
    print(head + " target |")
    print(rule + "---|")
    for size, label in SIZES:
        for clients in CLIENTS:
            ours = summary_line(out / f"ours-deliver-{size}-c{clients}.jsonl", "deliver-summary")
            rate = ours and ours["median_deliveries_per_s"]
            row = f"| {label} | {clients} | {fmt(rate)} | " \
                  f"{fmt(ours and ours['median_p50_ms'], 2)} / {fmt(ours and ours['median_p99_ms'], 2)} |"
            for f in formats:
                peer = summary_line(out / f"dovecot-{f}-lmtp-{size}-c{clients}.jsonl", "lmtp-deliver-summary")
                peer_rate = peer and peer["median_deliveries_per_s"]
                row += f" {fmt(peer_rate)} | {fmt(peer and peer['median_p50_ms'], 2)} / " \
                       f"{fmt(peer and peer['median_p99_ms'], 2)} | {ratio(rate, peer_rate)} |"
            target = ""
            if (size, clients) == DELIVER_TARGET[:2]:
                goal = DELIVER_TARGET[2]
                target = f"≥ {goal:,.0f}/s: " + ("**met**" if rate and rate >= goal else "**missed**")
            print(row + f" {target} |")
    print()

    print("## SELECT + UID/FLAGS of a 10,000-message mailbox (ms)\n")
    ours = summary_line(out / "ours-select.jsonl", "select")
    print("Ours: one `SelectMailbox` call (every UID, flags and MODSEQ), timed at the client. "
          "Dovecot: `imapbench.py login-fetch`, phases `SELECT INBOX` and `FETCH 1:* (FLAGS)` of a fresh "
          "session (median over 3 batches of 50 of each batch's percentiles; the sum of the two p50s "
          "approximates the p50 of the pair).\n")
    print("| what | messages | p50 | p90 | p99 | ours ÷ peer (p50) | target < 10 ms |")
    print("|---|---|---|---|---|---|---|")
    ours_p50 = ours and ours["p50_ms"]
    if ours:
        met = "**met**" if ours_p50 < SELECT_TARGET_MS else "**missed**"
        print(f"| ours, SelectMailbox | {ours['uids']:,} | {ours['p50_ms']:.2f} | {ours['p90_ms']:.2f} | "
              f"{ours['p99_ms']:.2f} | | p50 {met} |")
    for f in formats:
        lf = login_fetch(out, f)
        if not lf:
            continue
        sel, fetch = lf["select"], lf["fetch"]
        both = {q: sel[q] + fetch[q] for q in ("p50_ms", "p90_ms", "p99_ms")}
        print(f"| Dovecot {f}, SELECT + FETCH 1:* (FLAGS) | {lf['messages']:,} | {both['p50_ms']:.2f} | "
              f"{both['p90_ms']:.2f} | {both['p99_ms']:.2f} | {ratio(ours_p50, both['p50_ms'])} | |")
        print(f"| Dovecot {f}, FETCH 1:* (FLAGS) alone | {lf['messages']:,} | {fetch['p50_ms']:.2f} | "
              f"{fetch['p90_ms']:.2f} | {fetch['p99_ms']:.2f} | {ratio(ours_p50, fetch['p50_ms'])} | |")
        print(f"| Dovecot {f}, whole session (connect … LOGOUT) | {lf['messages']:,} | "
              f"{lf['total']['p50_ms']:.2f} | {lf['total']['p90_ms']:.2f} | {lf['total']['p99_ms']:.2f} | | |")
    if ours and ours.get("fill_seconds"):
        print(f"\nOur fill: {ours['fill_messages']:,} Deliver calls (8 clients) in {ours['fill_seconds']:.1f} s "
              f"({ours['fill_per_s']:.0f}/s); SelectMailbox response {ours['response_bytes']:,} octets.")
    for f in formats:
        fill = summary_line(out / f"dovecot-{f}-fill.jsonl", "lmtp-deliver-summary")
        if fill:
            print(f"Dovecot {f} fill: {fill['messages']:,} LMTP deliveries into one INBOX (8 clients) at "
                  f"{fill['median_deliveries_per_s']:.0f}/s.")
    print()

    cpu = json_lines(out / "cpu.jsonl")
    if cpu:
        servers = [k for k in cpu[0] if k.endswith("_cpu_s") and k != "client_cpu_s"]
        print("## Where the CPU goes (CPU seconds during each invocation, % of one core over its wall time; "
              "the machine has 2 cores = 200 %)\n")
        print("Server CPU per delivery = CPU of every server process over the messages delivered in the "
              "invocation (timed runs plus the 10 warm-up messages per client).\n")
        print("| invocation | wall s | client | " + " | ".join(k.removesuffix("_cpu_s") for k in servers)
              + " | server CPU ms per delivery |")
        print("|---|---|---|" + "---|" * len(servers) + "---|")
        for row in cpu:
            wall = row["wall_s"] or 1.0
            cells = [f"{row['client_cpu_s']:.1f} ({100 * row['client_cpu_s'] / wall:.0f} %)"]
            cells += [f"{row.get(k, 0):.1f} ({100 * row.get(k, 0) / wall:.0f} %)" for k in servers]
            runs = [r for r in json_lines(out / f"{row['label']}.jsonl") if r.get("bench") in ("deliver", "lmtp-deliver")]
            per_message = "–"
            if runs and "fill" not in row["label"]:
                delivered = sum(r["messages"] for r in runs) + 10 * runs[0]["clients"]
                per_message = f"{1000 * sum(row.get(k, 0) for k in servers) / delivered:.2f}"
            print(f"| {row['label']} | {wall:.1f} | " + " | ".join(cells) + f" | {per_message} |")


if __name__ == "__main__":
    main()
