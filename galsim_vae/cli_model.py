"""Sub-commands of ``galsim-vae`` that train or use a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["add_commands", "dataset_summary"]


def _model_arg(a):
    """The --model option as the library takes it: None for the shipped model."""
    return None if a.model == "default" else a.model


def dataset_summary(path, table, split_counts) -> dict:
    """What a model records about its training data."""
    sel = np.asarray(table["split"]) == "train"
    src = sorted(set(np.asarray(table["source"])[sel]))
    return {
        "file": Path(path).name,
        "sources": src,
        "n_train": int(split_counts.get("train", 0)),
        "n_valid": int(split_counts.get("valid", 0)),
        "pixel_scale": float(np.median(table["pixel_scale"][sel])),
        "median_norm_min": float(np.median(table["norm_min"][sel])),
        "median_norm_max": float(np.median(table["norm_max"][sel])),
        "median_noise_sigma": float(np.median(table["noise_sigma"][sel])),
    }


def _cmd_train(a):
    import dataclasses

    import torch

    from .dataset import StampDataset, read_dataset
    from .losses import VAELoss
    from .nn import PRESETS, build_vae
    from .plots import plot_learning_curve
    from .train import TrainConfig, train

    if a.threads:
        torch.set_num_threads(a.threads)
    images, table, _, _ = read_dataset(a.dataset)
    tr = StampDataset((images, table), "train")
    va = StampDataset((images, table), "valid")
    if a.max_train:
        tr.images = tr.images[: a.max_train]
    counts = {"train": len(tr), "valid": len(va)}
    summary = dataset_summary(a.dataset, table, counts)
    cfg = dataclasses.replace(PRESETS[a.preset], stamp_size=images.shape[1])
    model = build_vae(cfg)
    tc = TrainConfig(
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        augment=not a.no_augment,
        device=a.device,
        lr_patience=a.lr_patience,
        stop_patience=a.stop_patience,
    )
    out = Path(a.out)

    def plot(history):
        plot_learning_curve(
            history, out / "learning_curve.png", title=f"{a.preset} VAE, {a.loss} loss"
        )

    hist = train(
        model,
        tr.tensor(),
        va.tensor(),
        loss=VAELoss(a.loss, a.loss_param),
        out_dir=out,
        config=tc,
        pixel_scale=summary["pixel_scale"],
        dataset=summary,
        resume=not a.no_resume,
        progress=not a.quiet,
        on_epoch=plot,
        max_seconds=a.max_minutes * 60 if a.max_minutes else None,
    )
    if hist:
        plot(hist)
        best = min(hist, key=lambda h: h["valid_loss"])
        print(
            f"trained {len(hist)} epochs; best validation loss {best['valid_loss']:.5f} at "
            f"epoch {best['epoch']}; model {out / 'best.safetensors'}"
        )
    return 0


def _cmd_evaluate(a):
    from .analysis import evaluate

    res = evaluate(
        a.model, a.dataset, a.out, split=a.split, seed=a.seed, n_show=a.n_show, sersic=a.sersic
    )
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, (list, dict))}, indent=1))
    return 0


def _cmd_fit_density(a):
    from .dataset import StampDataset
    from .density import LatentDensity
    from .model import VAEModel, density_path

    model = VAEModel(_model_arg(a))
    ds = StampDataset(a.dataset, a.split)
    mu, _ = model.encode_normalized(ds.images)
    dens = LatentDensity.fit(
        mu,
        n_components=a.components,
        seed=a.seed,
        meta={
            "dataset": Path(a.dataset).name,
            "split": a.split,
            "model_sha256": model.metadata["sha256"],
        },
    )
    out = Path(a.out) if a.out else density_path(model.file_name)
    dens.save(out)
    print(f"wrote {out}: {a.components}-component mixture fitted to {len(mu)} latents")
    return 0


def _cmd_draw(a):
    from .galaxy import VAEGalaxy
    from .plots import plot_gallery, plot_scene
    from .scene import draw_scene

    model = _model_arg(a)
    image, gals, _ = draw_scene(
        a.n,
        size=a.size,
        pixel_scale=a.pixel_scale,
        psf=a.psf,
        fwhm=a.fwhm,
        noise_sigma=a.noise,
        seed=a.seed,
        model=model,
        sampling=a.sampling,
    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from ._io import atomic_path

    with atomic_path(out / "scene.fits") as tmp:
        image.write(str(tmp))
    plot_scene(
        image.array,
        out / "scene.png",
        title=f'{a.n} VAE galaxies, {a.psf} PSF {a.fwhm}", {a.pixel_scale}"/px, seed {a.seed}',
    )
    g = VAEGalaxy.sample(a.gallery, a.seed, model, sampling=a.sampling)
    stamps = [x.stamp.array for x in g]
    import numpy as np

    plot_gallery(
        np.array(stamps),
        out / "gallery.png",
        title="Samples at HST resolution",
        scale=g[0].stamp.scale,
    )
    print(f"wrote {out / 'scene.fits'}, {out / 'scene.png'} and {out / 'gallery.png'}")
    return 0


def _cmd_encode(a):
    from .encode import encode_catalog

    t = encode_catalog(
        a.catalog,
        a.out,
        model=_model_arg(a),
        chunk_size=a.chunk_size,
        scheduler=a.scheduler,
        nproc=a.nproc,
        progress=not a.quiet,
    )
    print(f"wrote {a.out}: {len(t)} rows, {int(t['flag'].sum())} flagged")
    return 0


def _cmd_fit_attributes(a):
    from .attributes import attributes_path, fit_attribute_model
    from .model import get_model

    model = _model_arg(a)
    am, rep = fit_attribute_model(
        a.dataset,
        model,
        max_rows=a.max_rows,
        report_dir=a.report,
        real_dataset=a.real,
        n_per=a.n_per,
        k=a.neighbours,
        measurements=a.measurements,
        nproc=a.nproc,
        progress=not a.quiet,
    )
    out = Path(a.out) if a.out else attributes_path(get_model(model).file_name)
    am.save(out)
    print(json.dumps({k: v for k, v in rep.items() if not isinstance(v, list)}, indent=1))
    print(f"wrote {out}")
    return 0


def _cmd_validate(a):
    from .validation import validate

    res = validate(
        a.dataset,
        a.out,
        model=_model_arg(a),
        seed=a.seed,
        n_samples=a.n_samples,
        loss_summary=a.loss_summary,
    )
    print(json.dumps(res["statistics_closer_than_sersic"], indent=1))
    print(f"wrote {Path(a.out) / 'validation.md'}")
    return 0


def add_commands(sub):
    """Add the model sub-commands to the ``galsim-vae`` sub-parser ``sub``."""
    from .losses import LOSSES
    from .nn import PRESETS

    t = sub.add_parser(
        "train",
        help="train a VAE on a dataset file",
        description="Train a VAE on the train split of a dataset file, with "
        "checkpoints every epoch; rerunning the same command resumes.",
    )
    t.add_argument("dataset")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--preset", choices=sorted(PRESETS), default="compact")
    t.add_argument("--loss", choices=LOSSES, default="beta")
    t.add_argument(
        "--loss-param", type=float, default=None, help="beta (beta loss) or lambda (flow loss)"
    )
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-patience", type=int, default=4)
    t.add_argument("--stop-patience", type=int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-train", type=int, default=0, help="use only the first N train stamps")
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    t.add_argument(
        "--max-minutes",
        type=float,
        default=0,
        help="stop after the epoch that passes this wall time (rerun to resume)",
    )
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

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
    e.set_defaults(func=_cmd_evaluate)

    d = sub.add_parser(
        "draw",
        help="draw a scene of sampled galaxies (the main job)",
        description="Sample galaxies from the model, convolve them with a PSF, "
        "draw them into a scene with noise: FITS + PNG, and a gallery PNG of "
        "samples at HST resolution.",
    )
    d.add_argument("--out", default="out", help="output folder [default: out]")
    d.add_argument("--model", default="default")
    d.add_argument("--n", type=int, default=60, help="number of galaxies")
    d.add_argument("--size", type=int, default=512, help="image side, pixels")
    d.add_argument("--pixel-scale", type=float, default=0.2, help="arcsec/pixel")
    d.add_argument("--psf", default="moffat", choices=("moffat", "gaussian", "airy", "none"))
    d.add_argument("--fwhm", type=float, default=0.7, help="PSF FWHM, arcsec")
    d.add_argument("--noise", type=float, default=5.0, help="Gaussian noise sigma per pixel")
    d.add_argument("--sampling", default="density", choices=("density", "prior"))
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--gallery", type=int, default=32, help="galaxies in the gallery PNG")
    d.set_defaults(func=_cmd_draw)

    n = sub.add_parser(
        "encode",
        help="encode a whole catalog to latents (local or Dask)",
        description="Encode every stamp of a dataset file or COSMOS catalog to "
        "its latent mean and sigma, with reconstruction chi2 and quality "
        "metrics; resumable; --scheduler runs it on a Dask cluster.",
    )
    n.add_argument("catalog", help="dataset file, or COSMOS catalog file or folder")
    n.add_argument("--out", required=True, help="output FITS table")
    n.add_argument("--model", default="default")
    n.add_argument("--chunk-size", type=int, default=2048)
    n.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786)")
    n.add_argument("--nproc", type=int, default=None)
    n.add_argument("--quiet", action="store_true")
    n.set_defaults(func=_cmd_encode)

    fa = sub.add_parser(
        "fit-attributes",
        help="fit the attribute <-> latent models",
        description="Fit Hubble type / size / axis ratio <-> latent models on a "
        "simulated dataset, measure them, and write them beside the model.",
    )
    fa.add_argument("dataset", help="a simulated dataset (true attributes)")
    fa.add_argument("--model", default="default")
    fa.add_argument("--out", default=None)
    fa.add_argument("--max-rows", type=int, default=10000)
    fa.add_argument("--n-per", type=int, default=48, help="galaxies per requested attribute")
    fa.add_argument(
        "--neighbours", type=int, default=64, help="training galaxies a request draws from"
    )
    fa.add_argument(
        "--measurements",
        default=None,
        help="reuse the Sersic fits of the training stamps (measurements.npz of a --report "
        "folder; a rerun with the same --report resumes by itself)",
    )
    fa.add_argument("--nproc", type=int, default=None)
    fa.add_argument("--quiet", action="store_true")
    fa.add_argument("--real", default=None, help="real dataset for the inverse-model check")
    fa.add_argument("--report", default=None, help="folder for the figure and JSON")
    fa.set_defaults(func=_cmd_fit_attributes)

    v = sub.add_parser(
        "validate",
        help="compare real, VAE and Sersic galaxy statistics",
        description="HSM and statmorph statistics of real galaxies, VAE "
        "reconstructions and samples, and best-fit Sersic profiles; Markdown "
        "report, PNG and JSON in OUT.",
    )
    v.add_argument("dataset", help="real dataset file (galsim-vae dataset)")
    v.add_argument("--out", required=True)
    v.add_argument("--model", default="default")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--n-samples", type=int, default=None)
    v.add_argument(
        "--loss-summary",
        default=None,
        help="summary.json of scripts/compare_losses.sh, added to the report",
    )
    v.set_defaults(func=_cmd_validate)

    f = sub.add_parser(
        "fit-density",
        help="fit the latent density sampled by VAEGalaxy",
        description="Encode a dataset and fit a Gaussian mixture to the latent "
        "means; written beside the model (MODEL_density.npz) unless --out.",
    )
    f.add_argument("dataset")
    f.add_argument("--model", default="default")
    f.add_argument("--split", default="passes")
    f.add_argument("--components", type=int, default=16)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default=None)
    f.set_defaults(func=_cmd_fit_density)
    return sub
