"""Collect the runs of scripts/gpu_experiments.sh and their held-out evaluations into one record.

    python3 scripts/summarize_gpu_experiments.py RUNS OUT.json

RUNS holds one folder per run (ft, softmax, scratch, wide, or gpu_ft, ... as
scripts/gpu_experiments.sh names them) with ``history.json`` and, where
evaluated, ``eval_deepfs/``, ``eval_struct/`` and ``eval_real/evaluate.json`` (galsim-vae evaluate
--split passes of data/sim_deepfs_heldout.fits, data/sim_struct_heldout.fits and
data/real_btk100.fits: ``galsim-vae evaluate RUNS/NAME/best.safetensors FILE --split passes --out
RUNS/NAME/eval_deepfs``, ...); ``gpu_timing.json`` (the solo epochs) and ``machine.txt`` beside
them, as the script writes them.
``population/population.json`` where a run's samples were measured (galsim-vae fit-density, then
population --n 10000 --seed 1). The shipped model's own records are read from docs/runs.
"""

import json
import sys
from pathlib import Path

from galsim_vae._utils import write_json

RUNS = {
    "ft": "compact, linear head, from the shipped model (v6), lr 1e-5, plateau patience 3",
    "softmax": "compact, softmax head, from the shipped model (v6), lr 1e-4, patience 2",
    "scratch": "compact, linear head, random start, lr 1e-3, patience 4 (docs/cosmos.md's old "
    "recipe)",
    "wide": "wide preset, linear head, random start, lr 1e-3, patience 4",
}
EVALS = {
    "eval_deepfs": "calibrated deep held-out",
    "eval_struct": "structured held-out",
    "eval_real": "53 real",
}


def brighter(ev):
    keep = ("n", "median_chi2_per_pixel_bright_half", "vae_over_floor_bright_half")
    return {k: ev[k] for k in keep if k in ev}


def population(p):
    """Border sky and negative light of 10,000 unguarded samples (fractions of the galaxies)."""
    return {
        "border_sky_beyond_2_10_25pct": [p["sky"][f"frac_beyond_{k}pct"] for k in (2, 10, 25)],
        "border_sky_median": p["sky"]["sky_over_flux_percentiles"]["p50"],
        "negative_light_beyond_10_25pct": [
            p["negative_light"][f"frac_beyond_{k}pct"] for k in (10, 25)
        ],
    }


def main(runs, out):
    runs = Path(runs)
    record = {
        "command": "scripts/gpu_experiments.sh cuda data (END set), then galsim-vae evaluate",
        "timing": json.loads((runs / "gpu_timing.json").read_text()),
        "machine": (runs / "machine.txt").read_text().splitlines()[:2],
        "runs": {},
    }
    sim = runs / "sim_hash.txt"  # the device's simulation: checksum of its stamps, time
    if sim.is_file():
        record["simulation_on_device"] = sim.read_text().splitlines()
    for name, what in RUNS.items():
        d = runs / name if (runs / name).is_dir() else runs / f"gpu_{name}"  # either layout
        h = json.loads((d / "history.json").read_text())
        best = min(h, key=lambda e: e["valid_loss"])
        rec = {
            "what": what,
            "epochs": len(h),
            "best_epoch": best["epoch"],
            "best_valid_loss": best["valid_loss"],
            "median_epoch_seconds": sorted(e["seconds"] for e in h)[len(h) // 2],
        }
        for sub, label in EVALS.items():
            f = d / sub / "evaluate.json"
            if f.is_file():
                rec[label] = brighter(json.loads(f.read_text()))
        pop = d / "population" / "population.json"  # galsim-vae population --n 10000 --seed 1
        if pop.is_file():
            rec["population"] = population(json.loads(pop.read_text()))
        record["runs"][name] = rec
    shipped = {}
    for label, f in (
        ("calibrated deep held-out", "docs/runs/default_evaluate_deepfs_sims.json"),
        ("structured held-out", "docs/runs/default_evaluate_heldout_sims.json"),
        ("53 real", "docs/runs/default_evaluate_real.json"),
    ):
        if Path(f).is_file():
            shipped[label] = brighter(json.loads(Path(f).read_text()))
    pop = Path("docs/runs/default_population.json")
    if pop.is_file():
        shipped["population"] = population(json.loads(pop.read_text()))
    record["shipped_v6"] = shipped
    write_json(out, record)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
