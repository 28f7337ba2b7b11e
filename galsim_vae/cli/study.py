"""``galsim-vae evaluate`` and ``validate``: the studies of a model."""

from __future__ import annotations

import json
from pathlib import Path

from ..studies.analysis import evaluate
from ..studies.crossval import crossval_real
from ..studies.population import population_report
from ..studies.validation import compare_simulator, validate
from ._common import (
    add_model_option,
    add_overwrite_option,
    check_output_dir,
    count,
    model_arg,
    positive,
)

__all__ = ["add_commands"]


def _cmd_evaluate(a):
    check_output_dir(a.out, ("evaluate.json", "reconstructions.png"), overwrite=a.overwrite)
    res = evaluate(
        a.model,
        a.dataset,
        a.out,
        split=a.split,
        seed=a.seed,
        n_show=a.n_show,
        sersic=a.sersic,
        nproc=a.nproc,
        progress=not a.quiet,
        refine=a.refine,
    )
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, (list, dict))}, indent=1))
    return 0


def _cmd_validate(a):
    names = (
        ("simulator.json", "simulator.md") if a.simulated else ("validation.json", "validation.md")
    )
    check_output_dir(a.out, names, overwrite=a.overwrite)
    if a.simulated is not None:
        res = compare_simulator(a.dataset, a.simulated, a.out, per_real=a.per_real, seed=a.seed)
        print(json.dumps(res["wasserstein_sim_to_real"], indent=1))
        print(f"wrote {Path(a.out) / 'simulator.md'}")
        return 0
    res = validate(
        a.dataset,
        a.out,
        model=model_arg(a),
        seed=a.seed,
        n_samples=a.n_samples,
        loss_summary=a.loss_summary,
    )
    print(json.dumps(res["statistics_closer_than_sersic"], indent=1))
    print(f"wrote {Path(a.out) / 'validation.md'}")
    return 0


def _cmd_population(a):
    report = population_report(
        model_arg(a),
        n=a.n,
        seed=a.seed,
        data_dir=a.data_dir,
        out_dir=a.out,
        overwrite=a.overwrite,
    )
    print(json.dumps(report["targets"], indent=1))
    if a.out:
        print(f"wrote {Path(a.out) / 'population.json'} and {Path(a.out) / 'population.png'}")
    return 0


def _cmd_crossval(a):
    # A rerun resumes: finished folds (fold<k>/fold.json) are kept, unless --overwrite.
    out = Path(a.out)
    if a.overwrite and out.is_dir():
        import shutil

        for f in out.glob("fold*"):
            shutil.rmtree(f)
        shutil.rmtree(out / "final", ignore_errors=True)
    res = crossval_real(
        a.dataset,
        a.simulated,
        a.out,
        model=model_arg(a),
        folds=a.folds,
        epochs=a.epochs,
        lr=a.lr,
        copies=a.copies,
        n_sim=a.n_sim,
        seed=a.seed,
        device=a.device,
        final=a.final,
        progress=not a.quiet,
    )
    print(json.dumps(res["pooled"], indent=1))
    print(f"wrote {out / 'crossval.md'}")
    return 0


def add_commands(sub):
    """Add the study commands to the ``galsim-vae`` sub-parser ``sub``."""
    e = sub.add_parser(
        "evaluate",
        help="figures and numbers of a model on a dataset",
        description="Reconstructions, latent SNR, traversals, latent histograms, "
        "rotation invariance and denoising of a model on a dataset: PNGs and a "
        "JSON in OUT.",
    )
    e.add_argument("model", help="weights file (or 'default')")
    e.add_argument("dataset")
    e.add_argument("--out", required=True)
    e.add_argument("--split", default="test", help="train, valid, test, passes or all")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--n-show", type=int, default=8)
    e.add_argument(
        "--sersic",
        action="store_true",
        help="also fit PSF-convolved Sersic profiles and compare chi2",
    )
    e.add_argument("--nproc", type=int, default=1, help="processes for the Sersic fits")
    e.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="also reconstruct from each stamp's posterior mode, refined from the encoder's "
        "mean in STEPS steps (flux models; 100 is the library's default), reported beside "
        "the encoder's numbers",
    )
    e.add_argument("--quiet", action="store_true")
    add_overwrite_option(e)
    e.set_defaults(func=_cmd_evaluate)

    v = sub.add_parser(
        "validate",
        help="compare real, VAE and Sersic galaxy statistics",
        description="HSM and statmorph statistics of real galaxies, VAE "
        "reconstructions and samples, and best-fit Sersic profiles; Markdown "
        "report, PNG and JSON in OUT.",
    )
    v.add_argument("dataset", help="real dataset file (galsim-vae dataset)")
    v.add_argument("--out", required=True)
    add_model_option(v)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--n-samples", type=int, default=None)
    v.add_argument(
        "--loss-summary",
        default=None,
        help="summary.json of scripts/compare_losses.sh, added to the report",
    )
    v.add_argument(
        "--simulated",
        default=None,
        help="a simulated dataset: compare the simulator (not a model) with the real galaxies, "
        "at matched SNR and size",
    )
    v.add_argument(
        "--per-real",
        type=count(),
        default=4,
        help="with --simulated: matched simulated stamps per real galaxy [default: 4]",
    )
    add_overwrite_option(v)
    v.set_defaults(func=_cmd_validate)

    c = sub.add_parser(
        "crossval",
        help="fine-tune on the real galaxies, measured by k-fold cross-validation",
        description="Fine-tune a flux model on the real galaxies of all folds but one (augmented, "
        "mixed with simulated training stamps) and reconstruct the held-out fold's galaxies, for "
        "each fold; per-fold and pooled chi2 against the starting model and Sersic fits in "
        "OUT/crossval.md. A rerun resumes finished folds.",
    )
    c.add_argument("dataset", help="real dataset file (galsim-vae dataset)")
    c.add_argument("simulated", help="the model's simulated training set (mixed in)")
    c.add_argument("--out", required=True)
    add_model_option(c)
    c.add_argument("--folds", type=count(2), default=5)
    c.add_argument("--epochs", type=count(), default=6)
    c.add_argument("--lr", type=positive, default=1e-4)
    c.add_argument("--copies", type=count(), default=8, help="augmented copies per real galaxy")
    c.add_argument("--n-sim", type=count(), default=4000, help="simulated stamps mixed in")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="cpu")
    c.add_argument(
        "--final",
        action="store_true",
        help="also fine-tune on every real galaxy: OUT/final/last.safetensors",
    )
    c.add_argument("--quiet", action="store_true")
    c.add_argument(
        "--overwrite", action="store_true", help="start again: remove finished folds in OUT"
    )
    c.set_defaults(func=_cmd_crossval)

    pp = sub.add_parser(
        "population",
        help="sampled galaxies against real COSMOS: pedestals, sizes, magnitudes, resolution",
        description="Sample galaxies from a model and measure them against real COSMOS data: "
        "decoded sky pedestals, half-light radii (COSMOS F814W<23.5 parametric galaxies with the "
        "HST PSF), F814W magnitudes (the COSMOS magnitude catalog), and the GREAT3-style "
        "resolution fraction; JSON and a PNG in OUT.",
    )
    add_model_option(pp)
    pp.add_argument("--n", type=count(), default=2000, help="galaxies to sample")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--out", default=None, help="folder for population.json and population.png")
    pp.add_argument("--data-dir", default=None, help="real data folder (default: auto)")
    pp.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pp.set_defaults(func=_cmd_population)
