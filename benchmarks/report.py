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
    "test_scene_vaegalaxy": ("1,000-galaxy scene, VAEGalaxy", "<= RealGalaxy"),
    "test_scene_realgalaxy": ("1,000-galaxy scene, RealGalaxy", ""),
    "test_encode_per_galaxy": ("VAE encoding (real stamps)", ""),
    "test_lsq_per_galaxy": ("Sersic least squares (real stamps)", ""),
    "test_mcmc_per_galaxy": ("Sersic emcee, 16 x 200 steps (real stamps)", ""),
    "test_pysersic_per_galaxy": ("pysersic NUTS, 2 x 2,000 steps (real stamp)", ""),
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
    by = {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}
    if "test_scene_vaegalaxy" in by and "test_scene_realgalaxy" in by:
        r = by["test_scene_vaegalaxy"] / by["test_scene_realgalaxy"]
        lines += ["", f"Scene cost ratio VAEGalaxy / RealGalaxy: {r:.2f} (target <= 1)."]
    if "test_encode_per_galaxy" in by:
        per = {b["name"]: b["stats"]["median"] / b["extra_info"]["n"] for b in data["benchmarks"]}
        enc = per["test_encode_per_galaxy"]
        if "test_lsq_per_galaxy" in per:
            lines.append(
                f"Encoding is {per['test_lsq_per_galaxy'] / enc:,.0f} times faster per "
                "galaxy than the least-squares Sersic fit (target >= 30)."
            )
        mc = [b for b in data["benchmarks"] if b["name"] == "test_mcmc_per_galaxy"]
        if mc:
            conv = mc[0]["extra_info"]["seconds_to_convergence_per_galaxy"]
            lines.append(
                f"emcee to convergence (50 autocorrelation times, tau = "
                f"{mc[0]['extra_info']['tau_max']:.0f} steps): {conv:,.0f} s per galaxy; "
                f"encoding is {conv / enc:,.0f} times faster (target >= 1e5)."
            )
        if "test_pysersic_per_galaxy" in per:
            lines.append(
                f"Encoding is {per['test_pysersic_per_galaxy'] / enc:,.0f} times faster per "
                "galaxy than pysersic's NUTS fit (target >= 1e4)."
            )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="pytest-benchmark JSON files (merged)")
    p.add_argument("--readme", default=None)
    a = p.parse_args(argv)
    runs = [json.loads(Path(f).read_text()) for f in a.json]
    data = dict(runs[0], benchmarks=[b for r in runs for b in r["benchmarks"]])
    t = table(data)
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
