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
    "test_encode_rate[reference]": ("encode, training network (fp32)", ">= 1,000/s"),
    "test_encode_rate[float32]": ("encode, fused fp32 (default)", ">= 70% of bound"),
    "test_encode_rate[bfloat16]": ("encode, fused bf16 (`auto` here)", ">= 70% of bound"),
    "test_decode_rate[reference]": ("decode, training network (fp32)", ""),
    "test_decode_rate[float32]": ("decode, fused fp32 (default)", ">= 50% of bound"),
    "test_decode_rate[bfloat16]": ("decode, fused bf16", ">= 50% of bound"),
    "test_refine_rate": ("encode + refine 100 steps (fp32, `refine=100`)", ""),
    "test_encode_catalog_dask[0]": ("encode_catalog, no Dask (2 threads)", ""),
    "test_encode_catalog_dask[1]": ("encode_catalog, Dask, 1 worker x 1 thread", ""),
    "test_encode_catalog_dask[2]": (
        "encode_catalog, Dask, 2 workers x 1 thread",
        ">= 1.7x 1 worker",
    ),
    "test_scene_vaegalaxy": ("1,000-galaxy scene, VAEGalaxy", "<= RealGalaxy"),
    "test_scene_realgalaxy": ("1,000-galaxy scene, RealGalaxy", ""),
    "test_galsim_executable_scene[vaegalaxy]": (
        "1,000-galaxy scene, `galsim` executable, VAEGalaxy",
        "<= RealGalaxy",
    ),
    "test_galsim_executable_scene[realgalaxy]": (
        "1,000-galaxy scene, `galsim` executable, RealGalaxy",
        "",
    ),
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
        "| benchmark | stamps | median time (s) | rate (stamps/s) | % of bound | target |",
        "|---|---|---|---|---|---|",
    ]
    for b in data["benchmarks"]:
        name, target = TARGETS.get(b["name"], (b["name"], ""))
        n = b["extra_info"].get("n", "")
        med = b["stats"]["median"]
        rate = n / med if n else float("nan")
        pct = b["extra_info"].get("percent_of_bound")
        pct = f"{pct:.0f}%" if pct is not None else ""
        lines.append(f"| {name} | {n} | {med:.2f} | {rate:,.0f} | {pct} | {target} |")
    bounds = {
        b["extra_info"]["precision"]: b["extra_info"]
        for b in data["benchmarks"]
        if "bound_flops_per_s" in b["extra_info"] and b["extra_info"]["precision"] != "reference"
    }
    if bounds:
        enc = [b for b in data["benchmarks"] if b["name"].startswith("test_encode_rate")]
        dec = [b for b in data["benchmarks"] if b["name"].startswith("test_decode_rate")]
        lines += [
            "",
            "Bounds (same run): "
            + "; ".join(
                f"{p} {e['bound_flops_per_s'] / 1e9:,.0f} GFLOP/s ({e['bound_kernel']})"
                for p, e in bounds.items()
            )
            + (
                f"; encoder {enc[0]['extra_info']['flops_per_stamp'] / 1e6:.1f} MFLOP/stamp"
                if enc
                else ""
            )
            + (
                f", decoder {dec[0]['extra_info']['flops_per_stamp'] / 1e6:.1f} MFLOP/stamp."
                if dec
                else "."
            ),
        ]
    by = {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}
    d1, d2 = by.get("test_encode_catalog_dask[1]"), by.get("test_encode_catalog_dask[2]")
    if d1 and d2:
        lines.append(f"Dask scale-out: 2 workers encode at {d1 / d2:.2f}x the rate of one.")
    if "test_scene_vaegalaxy" in by and "test_scene_realgalaxy" in by:
        r = by["test_scene_vaegalaxy"] / by["test_scene_realgalaxy"]
        lines += ["", f"Scene cost ratio VAEGalaxy / RealGalaxy: {r:.2f} (target <= 1)."]
    ev, er = (by.get(f"test_galsim_executable_scene[{k}]") for k in ("vaegalaxy", "realgalaxy"))
    if ev and er:
        lines.append(
            f"Through the `galsim` executable (one object at a time, startup included): "
            f"VAEGalaxy / RealGalaxy {ev / er:.2f} (target <= 1)."
        )
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
