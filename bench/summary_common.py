"""What the benchmark summaries share.

  median(values), cell(values)     a median (None for no values); it with each run's figure
  result_objects(path)             the RESULT objects the load tools print (none for a missing file)
  cpu_rows(out)                    the rows of cpu.jsonl (`measure` in bench/lib.sh)
  section_cpu(out, digits)         prints them as a table of CPU seconds per step
  section_refused_commands(paths)  prints the IMAP commands not answered OK (bench/imapbench-logged.py)
  server_log_problems(out, names)  prints the warnings and errors in our servers' logs
  section_fill(out, sides)         prints how each side's INBOXes were filled (imapbench.py fill)
  section_failed_steps(out)        prints failures.txt, the steps a script recorded as failed
"""
import json
import re
import statistics


def median(values):
    return statistics.median(values) if values else None


def cell(values, digits=0):
    """The median and each run's figure, e.g. `855 (855 / 840 / 901)`."""
    if not values:
        return "–"
    each = " / ".join(f"{v:,.{digits}f}" for v in values)
    return f"{median(values):,.{digits}f} ({each})" if len(values) > 1 else f"{values[0]:,.{digits}f}"


def result_objects(path):
    """The RESULT objects of a file of load-tool outputs (imapbench.py, pop3-load.py, e2e.py,
    idle-mem.py), failed runs included."""
    if not path.exists():
        return []
    return [json.loads(line.split(" ", 1)[1]) for line in path.read_text().splitlines() if line.startswith("RESULT {")]


def cpu_rows(out):
    path = out / "cpu.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def section_cpu(out, digits):
    rows = cpu_rows(out)
    if not rows:
        return
    names = []
    for row in rows:
        for key in row:
            if key.endswith("_cpu_s") and key not in names:
                names.append(key)
    print("## CPU seconds per step (process trees from /proc; the client is the load tool)\n")
    print("| step | exit | wall s | " + " | ".join(n.removesuffix("_cpu_s").replace("_", "-") for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for row in rows:
        print(f"| {row['label']} | {row['exit']} | {row['wall_s']:.1f} | "
              + " | ".join(f"{row[n]:.{digits}f}" if n in row else "–" for n in names) + " |")
    print()


def section_refused_commands(paths, expected=lambda step, command, reply: False):
    """Prints the commands not answered OK that bench/imapbench-logged.py wrote into the logs
    `paths` (`NOT OK: <command> -> <reply>`): one example per step, command verb and reply text
    (whatever the tag, numbers or ranges), with how often it came. `expected` says which are
    no finding."""
    refused = {}
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("NOT OK: "):
                continue
            command, _, reply = line.removeprefix("NOT OK: ").partition(" -> ")
            if expected(path.stem, command, reply):
                continue
            key = (path.stem, command.split(" ")[0], re.sub(r"^\S+ ", "", re.sub(r"\d+", "#", reply)))
            refused.setdefault(key, [0, command, reply])[0] += 1
    if refused:
        print("## Commands not answered OK (command → the server's tagged reply; one example per kind)\n")
        print("| step | count | command | reply |")
        print("|---|---|---|---|")
        for (step, _, _), (count, command, reply) in sorted(refused.items()):
            print(f"| {step} | {count} | `{command[:120]}` | `{reply[:200]}` |")
        print()


def server_log_problems(out, names):
    """Prints, for each log in `out` named in `names`, its WARN and ERROR lines: each kind once
    (the same message repeats with other timestamps and clients), with how often it came."""
    found = []
    for name in names:
        path = out / name
        if not path.exists():
            continue
        bad = [line for line in path.read_text(errors="replace").splitlines() if re.search(r"\b(WARN|ERROR)\b", line)]
        if bad:
            kinds = {}
            for line in bad:
                key = re.sub(r"\d", "#", re.sub(r"^\S+\s+", "", line))[:160]
                kinds.setdefault(key, [0, line])[0] += 1
            found.append((name, len(bad), list(kinds.values())))
    if found:
        print("## Warnings and errors in our servers' logs\n")
        for name, count, kinds in found:
            print(f"`{name}`: {count} lines, {len(kinds)} kinds; first of each (up to 8 kinds):\n```")
            for n, line in kinds[:8]:
                print(f"[{n}×] {line[:400]}")
            print("```\n")


def section_fill(out, sides):
    """Prints the APPENDs that filled the INBOXes, from fill-<side>.jsonl of each of `sides`."""
    lines = []
    for side in sides:
        for r in result_objects(out / f"fill-{side}.jsonl"):
            rate = r["appended"] / r["elapsed_s"] if r["elapsed_s"] else 0
            lines.append(f"{side}: {r['appended']:,} in {r['elapsed_s']:.1f} s ({rate:,.0f} msg/s), "
                         f"INBOX now {r['messages']:,}, errors {r['errors']}")
    if lines:
        print("INBOX fill (`imapbench.py fill`, APPEND over IMAP, same corpus on both): " + "; ".join(lines) + ".\n")


def section_failed_steps(out):
    failures = out / "failures.txt"
    if failures.exists() and failures.read_text().strip():
        print("## Failed steps\n")
        print(failures.read_text().strip() + "\n")
