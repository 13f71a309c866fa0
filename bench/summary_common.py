"""What the benchmark summaries share.

  cpu_rows(out)                    the rows of cpu.jsonl (`measure` in bench/lib.sh)
  section_cpu(out, digits)         prints them as a table of CPU seconds per step
  server_log_problems(out, names)  prints the warnings and errors in our servers' logs
"""
import json
import re


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
