"""Write the README's speed table from a pytest-benchmark JSON file.

    python -m pytest benchmarks/bench_throughput.py --benchmark-json=bench.json
    python benchmarks/report.py bench.json            # prints the table
    python benchmarks/report.py bench.json --readme README.md   # replaces the table in README.md

Every number in the table comes from the JSON: machine, versions, medians and rates.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
TARGETS = {
    "test_simulate_throughput": ("simulate COSMOS-like stamps", ">= 111/s (20,000 in 3 min)"),
    "test_encode_throughput": ("encode stamps, shipped model", ">= 1,000/s"),
}


def table(data: dict) -> str:
    m = data["machine_info"]
    lines = [
        f"Machine: {m.get('cpu', {}).get('brand_raw', m.get('processor', '?'))}, "
        f"{m.get('cpu', {}).get('count', '?')} cores, Python {m.get('python_version', '?')}; "
        f"run {data.get('datetime', '?')[:19]}.",
        "",
        "| benchmark | stamps | median time (s) | rate (stamps/s) | target |",
        "|---|---|---|---|---|",
    ]
    for b in data["benchmarks"]:
        name, target = TARGETS.get(b["name"], (b["name"], ""))
        n = b["extra_info"].get("n", "")
        med = b["stats"]["median"]
        rate = n / med if n else float("nan")
        lines.append(f"| {name} | {n} | {med:.2f} | {rate:,.0f} | {target} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--readme", default=None)
    a = p.parse_args(argv)
    t = table(json.loads(Path(a.json).read_text()))
    if a.readme:
        text = Path(a.readme).read_text()
        block = f"{START}\n{t}\n{END}"
        if START in text:
            text = re.sub(re.escape(START) + ".*?" + re.escape(END), block, text, flags=re.S)
        else:
            text = text.replace("BENCH_TABLE", block)
        Path(a.readme).write_text(text)
    print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
