"""Collect the decoder-widening experiment into one JSON (docs/runs/widen_experiment.json).

    python scripts/summarize_widen.py OUT.json RUN_DIR [RUN_DIR ...]

Each RUN_DIR is a ``galsim-vae train`` folder (its history.json and best.safetensors); beside it,
``RUN_DIR/eval_heldout`` and ``RUN_DIR/eval_real`` (``galsim-vae evaluate --out``) are read when
present. Per run: the preset, epochs, the validation loss after each epoch and at its best, the
median seconds an epoch, and the evaluations' brighter-half numbers (encoder means and, where
evaluated with --refine, refined latents).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = (
    "n",
    "median_chi2_per_pixel_bright_half",
    "vae_over_floor_bright_half",
    "floor_median_chi2_per_pixel_bright_half",
    "median_chi2_to_truth_bright_half",
    "refine_steps",
    "refined_median_chi2_per_pixel_bright_half",
    "refined_over_floor_bright_half",
    "refined_median_chi2_to_truth_bright_half",
)


def run_summary(run: Path) -> dict:
    from galsim_vae.checkpoint import read_metadata

    hist = json.loads((run / "history.json").read_text())
    best = min(hist, key=lambda e: e["valid_loss"])
    meta = read_metadata(run / "best.safetensors")
    arch = json.loads(meta["architecture"])
    out = {
        "preset": arch.get("name"),
        "decoder_widths": arch.get("decoder_channels") or list(reversed(arch["channels"])),
        "weights_bytes": (run / "best.safetensors").stat().st_size,
        "lr": hist[0]["lr"],
        "epochs": len(hist),
        "best_epoch": best["epoch"],
        "best_valid_loss": best["valid_loss"],
        "valid_loss": [round(e["valid_loss"], 6) for e in hist],
        "train_loss": [round(e["train_loss"], 6) for e in hist],
        "median_epoch_seconds": sorted(e["seconds"] for e in hist)[len(hist) // 2],
    }
    for name in ("eval_heldout", "eval_real"):
        f = run / name / "evaluate.json"
        if f.is_file():
            ev = json.loads(f.read_text())
            out[name] = {k: ev[k] for k in KEYS if k in ev}
    return out


def main(argv):
    out, runs = Path(argv[0]), [Path(r) for r in argv[1:]]
    doc = {
        "command": "scripts/gpu_widen.sh's runs (galsim-vae train --init default), then "
        "galsim-vae evaluate; scripts/summarize_widen.py",
        "runs": {r.name: run_summary(r) for r in runs},
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")
    brief = {k: {x: v[x] for x in ("epochs", "best_valid_loss")} for k, v in doc["runs"].items()}
    print(json.dumps(brief))


if __name__ == "__main__":
    main(sys.argv[1:])
