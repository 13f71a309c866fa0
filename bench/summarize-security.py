#!/usr/bin/env python3
"""Tables from one bench/security.sh results directory: SMTP accepted/s, IMAP mixed cmd/s and
queue → mailbox msg/s with security off and on (median over the rounds, each round's figure,
on ÷ off); then, per step and mode, the CPU per message or command of every process and what
the step did to connections: gRPC connections opened to the mailstore, its gRPC calls, NATS
connections accepted and messages."""
import json
import pathlib
import re
import sys

from summary_common import (cell, cpu_rows, median, result_objects, section_failed_steps, section_refused_commands,
                            server_log_problems)

MODES = ("off", "on")
TARGET = 0.90  # security on within 10 % of off




def jsonl(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smtp(out, mode):
    """msgs/s of each round."""
    return [run["msgs_per_s"] for r in result_objects(out / f"smtp-{mode}.jsonl") for row in r["rows"]
            for run in row["runs"]]


def smtp_units(out, mode):
    return [r["msgs"] for r in result_objects(out / f"smtp-{mode}.jsonl")]


def mixed_counts(out):
    counts = set()
    for path in out.glob("mixed-c*-off.jsonl"):
        counts.add(int(re.fullmatch(r"mixed-c(\d+)-off\.jsonl", path.name).group(1)))
    return sorted(counts)


def mixed(out, clients, mode):
    return result_objects(out / f"mixed-c{clients}-{mode}.jsonl")


def failed_commands(run):
    return sum(n for name, n in run["errors"].items() if name != "SESSION")


def drain(out, mode):
    return [r for r in jsonl(out / f"drain-times-{mode}.jsonl") if r["round"] > 0]


def figures(out):
    """[(name, {mode: [per round]}, note per mode)]."""
    rows = []
    sessions = {r["rows"][0]["sessions"] for m in MODES for r in result_objects(out / f"smtp-{m}.jsonl")}
    sizes = {r["size"] for m in MODES for r in result_objects(out / f"smtp-{m}.jsonl")}
    rows.append((f"SMTP accepted (msg/s), {'/'.join(map(str, sorted(sessions)))} sessions, "
                 f"{'/'.join(f'{s:,}' for s in sorted(sizes))} B", {m: smtp(out, m) for m in MODES}, {}))
    for clients in mixed_counts(out):
        runs = {m: mixed(out, clients, m) for m in MODES}
        notes = {m: f"; {sum(failed_commands(r) for r in runs[m])} failed" for m in MODES}
        rows.append((f"IMAP mixed (cmd/s), {clients} clients", {m: [r["cmds_per_s"] for r in runs[m]] for m in MODES},
                     notes))
    rows.append(("queue → mailbox, delivery-queue (msg/s)", {m: [r["msgs_per_s"] for r in drain(out, m)] for m in MODES},
                 {}))
    return rows


def section_figures(out):
    print("## Security off and on (medians over the rounds; each round's figure in brackets)\n")
    print(f"| figure | off | on | on ÷ off | target: on ≥ {TARGET:.2f} × off |")
    print("|---|---|---|---|---|")
    for name, by_mode, notes in figures(out):
        off, on = by_mode["off"], by_mode["on"]
        ratio = median(on) / median(off) if off and on else None
        each = ""
        if off and on and len(off) == len(on):
            each = " (" + " / ".join(f"{b / a:.2f}" for a, b in zip(off, on)) + ")"
        verdict = "–" if ratio is None else ("met" if ratio >= TARGET else "**not met**")
        if name.startswith("queue"):
            verdict = f"– (not a target; {verdict})"
        print(f"| {name} | {cell(off)}{notes.get('off', '')} | {cell(on)}{notes.get('on', '')} | "
              f"{'–' if ratio is None else f'{ratio:.2f}'}{each} | {verdict} |")
    print("\nThe ratio in brackets is each round's on ÷ off (the two modes ran back to back).\n")


def step_units(out):
    """{label: [units of work of each occurrence]}: messages for smtp and drain, commands for mixed."""
    units = {}
    for mode in MODES:
        units[f"smtp-{mode}"] = smtp_units(out, mode)
        units[f"drain-{mode}"] = [r["messages"] for r in drain(out, mode)]
        for clients in mixed_counts(out):
            units[f"mixed-c{clients}-{mode}"] = [r["cmds_per_s"] * r["duration_s"] for r in mixed(out, clients, mode)]
    return units


def by_label(rows):
    grouped = {}
    for row in rows:
        grouped.setdefault(row["label"], []).append(row)
    return grouped


def step_kinds(out):
    kinds = ["smtp"] + [f"mixed-c{c}" for c in mixed_counts(out)] + ["drain"]
    return kinds


PROCESSES = [("client", "client_cpu_s"), ("PostgreSQL", "postgres_cpu_s"), ("NATS", "nats_{m}_cpu_s"),
             ("mailstore", "mailstore_{m}_cpu_s"), ("imap-frontend", "imap_frontend_{m}_cpu_s"),
             ("smtp-ingress", "smtp_ingress_{m}_cpu_s"), ("delivery-queue", "delivery_queue_cpu_s")]


def section_cpu(out):
    units = step_units(out)
    cpu = by_label(cpu_rows(out))
    print("## CPU per message or command (ms; median over the rounds; process trees from /proc)\n")
    print("A unit is an accepted message (SMTP), a delivered message (queue → mailbox) or a command "
          "(mixed). \"servers\" is every server process together; the client is the load tool.\n")
    print("| step | mode | " + " | ".join(name for name, _ in PROCESSES) + " | servers |")
    print("|---|---|" + "---|" * (len(PROCESSES) + 1))
    for kind in step_kinds(out):
        for mode in MODES:
            label = f"{kind}-{mode}"
            rows, n = cpu.get(label, []), units.get(label, [])
            if not rows or len(rows) != len(n):
                continue
            cells, servers = [], []
            for name, key in PROCESSES:
                key = key.format(m=mode)
                per = [row[key] * 1000 / u for row, u in zip(rows, n) if key in row and u]
                cells.append(f"{median(per):.3f}" if per else "–")
            for row, u in zip(rows, n):
                if u:
                    servers.append(sum(v for k, v in row.items() if k.endswith("_cpu_s") and k != "client_cpu_s"
                                       and (f"_{mode}_" in k or k.startswith(("postgres", "delivery_queue")))) * 1000 / u)
            print(f"| {kind} | {mode} | " + " | ".join(cells) + f" | {median(servers):.3f} |")
    print()


def section_connections(out):
    units = step_units(out)
    grouped = by_label(jsonl(out / "connections.jsonl"))
    print("## Connections and calls per step (median over the rounds)\n")
    print("gRPC connections opened: distinct client ports on the mailstore's gRPC port seen by `ss` after "
          "the step and not before (a closed connection stays in TIME-WAIT for 60 s); with mutual TLS "
          "each is one handshake. NATS: connections its server accepted during the step (/varz "
          "total_connections) and messages in.\n")
    print("| step | mode | gRPC connections opened | gRPC connections open after | gRPC calls | "
          "calls per unit | NATS connections accepted | NATS msgs in per unit |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in step_kinds(out):
        for mode in MODES:
            label = f"{kind}-{mode}"
            rows, n = [r[mode] for r in grouped.get(label, [])], units.get(label, [])
            if not rows:
                continue
            med = lambda key: median([r[key] for r in rows])
            per = lambda key: (f"{median([r[key] / u for r, u in zip(rows, n) if u]):.2f}"
                               if len(n) == len(rows) else "–")
            print(f"| {kind} | {mode} | {med('grpc_connections_opened'):g} | "
                  f"{med('grpc_connections_established_after'):g} | {med('grpc_calls'):,.0f} | {per('grpc_calls')} | "
                  f"{med('nats_connections_accepted'):g} | {per('nats_in_msgs')} |")
    print()
    # The calls by method of the first round of each step, for reading.
    methods = []
    for kind in step_kinds(out):
        for mode in MODES:
            rows = grouped.get(f"{kind}-{mode}", [])
            if rows:
                calls = rows[0][mode]["grpc_calls_by_method"]
                methods.append(f"{kind}-{mode}: " + (", ".join(f"{m.rsplit('/', 1)[-1]} {c:,}" for m, c in calls.items())
                                                    or "none"))
    if methods:
        print("gRPC calls by method, first round:\n")
        for line in methods:
            print(f"- {line}")
        print()


def section_problems(out):
    section_refused_commands(sorted(out.glob("mixed-c*-*.log")))
    section_failed_steps(out)
    server_log_problems(out, [f"{name}-{mode}.log" for mode in MODES
                              for name in ("mailstore", "imap-frontend", "smtp-ingress", "delivery-queue", "nats")])


def main():
    out = pathlib.Path(sys.argv[1])
    print(f"# What security costs — {out.name}\n")
    for name in ("machine.txt", "durability.txt", "security-check.txt"):
        if (out / name).exists():
            print(f"`{name}`:\n```\n{(out / name).read_text().strip()}\n```\n")
    section_figures(out)
    section_cpu(out)
    section_connections(out)
    section_problems(out)


if __name__ == "__main__":
    main()
