"""``galsim-vae train``, ``fit-density``, ``fit-attributes`` and ``draw``: make and use a model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import galsim
import numpy as np
import torch
from galsim.errors import galsim_warn

from .._utils import atomic_path
from ..attributes import attributes_path
from ..density import LatentDensity
from ..errors import GalSimIncompatibleValuesError, GalSimValueError
from ..galaxy import VAEGalaxy
from ..model import density_path, get_model
from ..nn import PRESETS, build_vae
from ..pipeline.dataset import (
    StampDataset,
    dataset_summary,
    read_dataset,
    read_truths,
    select_with_low_snr,
)
from ..psf import HST_PIXEL_SCALE
from ..scene import draw_scene
from ..stamp import postage_stamp_profile
from ..studies.attribute_fit import fit_attribute_model
from ..studies.plots import plot_gallery, plot_learning_curve, plot_scene, plot_scenes
from ..studies.population import magnitude_catalog, magnitude_prior, magnitudes, redshift_prior
from ..training.loop import TrainConfig, train
from ..training.losses import LOSSES, VAELoss
from ._common import (
    add_model_option,
    add_overwrite_option,
    check_output,
    check_output_dir,
    count,
    model_arg,
    model_sidecar,
    positive,
)

__all__ = ["add_commands"]


def _init_weights(model, path, loss, seed=0):
    """Load the weights file ``path`` into ``model`` for fine-tuning; returns its checksum. A
    network that differs from ``model`` only by a narrower decoder is widened into it first
    (:func:`~galsim_vae.nn.widen_decoder`, its split weights' spread drawn with ``seed``)."""
    from ..checkpoint import load_state_dict
    from ..model import default_model_path
    from ..nn import OUTPUT_REPRESENTATION, VAE, VAEConfig, widen_decoder

    if path == "default":  # the shipped model, as --model takes it
        path = default_model_path()
    if not Path(path).is_file():
        raise GalSimValueError("--init weights file not found", str(path))
    tensors, meta = load_state_dict(path)
    # The same tensors whatever the flux decoder's head (linear or softmax): a run may
    # fine-tune one into the other.
    was = VAEConfig.from_json(meta["architecture"])
    if OUTPUT_REPRESENTATION[was.output] == OUTPUT_REPRESENTATION[model.config.output]:
        was = dataclasses.replace(was, output=model.config.output)
    if was != model.config:  # only a narrower decoder can start this network: widened
        trained = VAE(was)
        trained.load_state_dict(tensors)
        gen = torch.Generator().manual_seed(seed)
        try:
            tensors = widen_decoder(trained, model.config, generator=gen).state_dict()
        except GalSimIncompatibleValuesError:
            raise GalSimIncompatibleValuesError(
                f"--init {path} is another network than --preset gives; fine-tune with its "
                "preset (or a preset that only widens its decoder)",
                init=str(path),
            ) from None
    if meta.get("representation", "minmax") != loss.representation:
        raise GalSimIncompatibleValuesError(
            f"--init {path} was trained on {meta.get('representation')} stamps, the "
            f"{loss.kind} loss takes {loss.representation} stamps",
            init=str(path),
        )
    model.load_state_dict(tensors)
    return meta["sha256"]


def _cmd_train(a):

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.positivity and (a.loss != "gauss" or a.output != "linear"):
        raise GalSimIncompatibleValuesError(
            "--positivity needs --loss gauss and the linear head (softmax pixels are positive)",
            positivity=a.positivity,
            loss=a.loss,
            output=a.output,
        )
    if a.floor and (a.loss != "gauss" or a.target != "truth"):
        raise GalSimIncompatibleValuesError(
            "--floor compares with the noiseless truths: it needs --loss gauss and --target truth",
            floor=a.floor,
            loss=a.loss,
            target=a.target,
        )
    loss = VAELoss(a.loss, a.loss_param, positivity=a.positivity, floor=a.floor)
    truth = a.target == "truth"
    if truth and loss.kind != "gauss":
        raise GalSimIncompatibleValuesError(
            "--target truth needs --loss gauss", target=a.target, loss=a.loss
        )
    if a.output != "linear" and loss.representation == "minmax":
        raise GalSimIncompatibleValuesError(
            f"--output {a.output} is for flux-normalised stamps; the {loss.kind} loss decodes "
            "[0, 1] stamps through a sigmoid",
            output=a.output,
            loss=a.loss,
        )
    images, table, _, header = read_dataset(a.dataset)
    truths = read_truths(a.dataset) if truth else None
    if truth and truths is None:
        raise GalSimValueError(
            f"--target truth: {a.dataset} has no noiseless truths (simulated sets have them)",
            a.dataset,
        )
    masks = {}
    if a.with_low_snr:  # the faint rows the SNR cut removes, each in the split it falls in
        parts = []
        for split in ("train", "valid"):
            m, _ = select_with_low_snr(table, header, images, split)
            masks[split] = m
            parts.append(StampDataset((images, table, truths), m, loss.representation, truth=truth))
        tr, va = parts
    else:
        tr = StampDataset((images, table, truths), "train", loss.representation, truth=truth)
        va = StampDataset((images, table, truths), "valid", loss.representation, truth=truth)
    if a.max_train:
        tr.images, tr.sigma = tr.images[: a.max_train], tr.sigma[: a.max_train]
        tr.truth = None if tr.truth is None else tr.truth[: a.max_train]
    summary = dataset_summary(a.dataset, table, masks.get("train"), masks.get("valid"))
    summary = dict(summary, n_train=len(tr))
    if a.with_low_snr:
        summary["with_low_snr"] = True
    output = "sigmoid" if loss.representation == "minmax" else a.output
    cfg = dataclasses.replace(PRESETS[a.preset], stamp_size=images.shape[1], output=output)
    with torch.random.fork_rng():  # --seed fixes the initial weights too; global state kept
        torch.manual_seed(a.seed)
        model = build_vae(cfg)
    init = None
    if a.init is not None:  # fine-tuning: another run's weights, of this network and loss
        init = _init_weights(model, a.init, loss, a.seed)
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
        loss=loss,
        train_sigma=tr.sigma_tensor(),
        valid_sigma=va.sigma_tensor(),
        out_dir=out,
        config=tc,
        pixel_scale=summary["pixel_scale"],
        dataset=summary,
        resume=not a.no_resume,
        progress=not a.quiet,
        on_epoch=plot,
        max_seconds=a.max_minutes * 60 if a.max_minutes else None,
        init=init,
        train_target=tr.truth_tensor(),
        valid_target=va.truth_tensor(),
    )
    if hist:
        plot(hist)
        best = min(hist, key=lambda h: h["valid_loss"])
        print(
            f"trained {len(hist)} epochs; best validation loss {best['valid_loss']:.5f} at "
            f"epoch {best['epoch']}; model {out / 'best.safetensors'}"
        )
    return 0


def _cmd_fit_density(a):

    model = get_model(model_arg(a))
    out = model_sidecar(model.file_name, density_path(model.file_name), a.out)
    check_output(out, [a.dataset, model.file_name], overwrite=a.overwrite)
    prior = False  # the catalog read first: a missing one fails before the encoding
    if model.representation == "flux" and a.magnitudes == "cosmos":
        try:
            prior = magnitude_catalog(a.data_dir) is not None
        except GalSimValueError as e:
            raise GalSimValueError(
                f"{e} (the COSMOS magnitudes; --data-dir, or --magnitudes training to keep the "
                "training set's)",
                a.data_dir,
            ) from e
    redshifts = prior  # optional: without the fit catalog, no sampling at a redshift
    if prior:
        try:
            redshift_prior(a.data_dir)
        except GalSimValueError as e:
            redshifts = False
            galsim_warn(f"{e}: the density will have no redshifts (VAEGalaxy.sample(redshift=))")
    if a.low_snr_brighter_than is not None and not a.with_low_snr:
        raise GalSimIncompatibleValuesError(
            "--low-snr-brighter-than goes with --with-low-snr",
            low_snr_brighter_than=a.low_snr_brighter_than,
        )
    if a.with_low_snr:
        images, table, _, header = read_dataset(a.dataset)
        sel, n_low = select_with_low_snr(
            table, header, images, a.split, brighter_than=a.low_snr_brighter_than
        )
        ds = StampDataset((images, table), sel, model.representation)
    else:
        ds = StampDataset(a.dataset, a.split, model.representation)
        n_low = 0
    mu, _ = model.encode_normalized(ds.images)
    aux = None
    if model.representation == "flux":  # sizes and fluxes drawn with the latents
        aux = {"log10_flux": np.log10(ds.flux)}
        scale = np.log10(np.asarray(ds.table["pixel_scale"], dtype=float))
        if np.ptp(scale) > 0:  # a one-scale training set has no size to draw
            aux = {"log10_pixel_scale": scale, **aux}
    meta = {
        "dataset": Path(a.dataset).name,
        "split": a.split
        + (
            f" + {n_low} rows below the SNR cut"
            + (
                f" brighter than F814W {a.low_snr_brighter_than:g}"
                if a.low_snr_brighter_than is not None
                else ""
            )
            if a.with_low_snr
            else ""
        ),
        "model_sha256": model.metadata["sha256"],
    }
    if prior:  # only magnitudes the density saw: none drawn by extrapolation
        brightest = float(magnitudes(ds.flux.max())[0])
        meta["magnitude_prior"] = magnitude_prior(a.data_dir, brightest=brightest)
        if redshifts:
            meta["redshift_prior"] = redshift_prior(a.data_dir, brightest=brightest)
    dens = LatentDensity.fit(mu, aux=aux, n_components=a.components, seed=a.seed, meta=meta)
    dens.save(out)
    prior = " and the COSMOS magnitude distribution" if "magnitude_prior" in meta else ""
    print(f"wrote {out}: {a.components}-component mixture fitted to {len(mu)} latents{prior}")
    return 0


def _cmd_fit_attributes(a):
    model = model_arg(a)
    mfile = get_model(model).file_name
    out = model_sidecar(mfile, attributes_path(mfile), a.out)
    check_output(out, [a.dataset, a.real, mfile], overwrite=a.overwrite)
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
    am.save(out)
    print(json.dumps({k: v for k, v in rep.items() if not isinstance(v, list)}, indent=1))
    print(f"wrote {out}")
    return 0


def _real_galaxies(catalog, n, seed):
    """``n`` RealGalaxy profiles of a COSMOS catalog (random rows, seeded), the catalog and the
    rows. Only galaxies whose peak is 20 times their noise: a scene gives each galaxy a flux, and
    the stamp of a faint one would bring its noise up with it."""
    from ..pipeline.stamps import open_catalog

    rgc = open_catalog(catalog)
    ok = [
        k
        for k in range(rgc.nobjects)
        if rgc.getGalImage(k).array.max() > 20 * rgc.variance[k] ** 0.5
    ]
    if not ok:
        raise GalSimValueError("no galaxy of the catalog is bright enough to show", catalog)
    rows = np.random.default_rng(seed).choice(ok, n, replace=len(ok) < n)
    return [galsim.RealGalaxy(rgc, index=int(k)) for k in rows], rgc, rows


def _cmd_draw(a):

    names = ["scene.fits", "scene.png", "gallery.png"]
    names += ["scene_vs_real.png", "gallery_real.png"] if a.real else []
    check_output_dir(a.out, names, overwrite=a.overwrite)
    model = model_arg(a)
    # The real catalog is opened first: a wrong one is refused before anything is drawn.
    if a.real and a.psf == "none":
        raise GalSimValueError(
            "--real needs a PSF: RealGalaxy profiles are deconvolved from their HST PSF", a.psf
        )
    real = _real_galaxies(a.real, max(a.n, a.gallery), a.seed) if a.real else None
    scene = dict(
        size=a.size,
        pixel_scale=a.pixel_scale,
        psf=a.psf,
        fwhm=a.fwhm,
        noise_sigma=a.noise,
        seed=a.seed,
    )
    image, gals, _ = draw_scene(a.n, model=model, sampling=a.sampling, **scene)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    with atomic_path(out / "scene.fits") as tmp:
        image.write(str(tmp))
    plot_scene(
        image.array,
        out / "scene.png",
        title=f'{a.n} VAE galaxies, {a.psf} PSF {a.fwhm}", {a.pixel_scale}"/px, seed {a.seed}',
    )
    g = VAEGalaxy.sample(a.gallery, a.seed, model, sampling=a.sampling)
    # On one grid at the HST 0.03"/px, 96 pixels (2.9") across, so that the panels show the
    # galaxies' sizes (a flux model's galaxies each come at their own pixel scale).
    kw = dict(nx=96, ny=96, scale=HST_PIXEL_SCALE, method="no_pixel", use_true_center=False)
    stamps = [x.drawImage(**kw).array for x in g]
    plot_gallery(
        np.array(stamps), out / "gallery.png", title="Samples at HST resolution", scale=kw["scale"]
    )
    print(f"wrote {out / 'scene.fits'}, {out / 'scene.png'} and {out / 'gallery.png'}")
    if a.real:
        # The same scene (layout, orientations, fluxes, PSF, noise) with real COSMOS galaxies,
        # and real postage stamps on the gallery's grid: what the samples should look like.
        real, rgc, rows = real
        rimage, _, _ = draw_scene(galaxies=real[: a.n], **scene)
        plot_scenes(
            {
                "VAE samples": image.array,
                "real COSMOS galaxies (RealGalaxy, peak > 20 sigma)": rimage.array,
            },
            out / "scene_vs_real.png",
            title=f'{a.n} galaxies, {a.psf} PSF {a.fwhm}", {a.pixel_scale}"/px, seed {a.seed}',
        )
        stamps = []
        for k in rows[: a.gallery]:  # pixels as observed, padded with their own noise
            ii = postage_stamp_profile(
                rgc.getGalImage(int(k)),
                noise=rgc.getNoise(int(k), rng=galsim.BaseDeviate(int(k) + 1)),
                pad=1.5 * kw["nx"] * kw["scale"],
                rng=galsim.BaseDeviate(int(k) + 1),
            )
            stamps.append(ii.drawImage(**kw).array)
        plot_gallery(
            np.array(stamps),
            out / "gallery_real.png",
            title=f"Real COSMOS galaxies ({Path(rgc.file_name).name}) at HST resolution",
            scale=kw["scale"],
        )
        print(f"wrote {out / 'scene_vs_real.png'} and {out / 'gallery_real.png'}")
    return 0


def add_commands(sub):
    """Add the model commands to the ``galsim-vae`` sub-parser ``sub``."""
    t = sub.add_parser(
        "train",
        help="train a VAE on a dataset file",
        description="Train a VAE on the train split of a dataset file, with "
        "checkpoints every epoch; rerunning the same command resumes.",
    )
    t.add_argument("dataset")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--preset", choices=sorted(PRESETS), default="compact")
    t.add_argument(
        "--loss",
        choices=LOSSES,
        default="beta",
        help="original, beta, flow: the paper's, on [0, 1] stamps; gauss: the Gaussian "
        "likelihood with each stamp's noise, on flux-normalised stamps",
    )
    t.add_argument(
        "--loss-param",
        type=float,
        default=None,
        help="beta (beta and gauss losses) or lambda (flow loss)",
    )
    t.add_argument(
        "--positivity",
        type=float,
        default=0.0,
        help="gauss loss, linear head: weight of the chi2 of the reconstruction's negative pixels "
        "against zero (a galaxy's light is never negative); on the shipped model it traded "
        "negative light for a positive floor (MODEL_CARD.md) "
        "[default: 0, none]",
    )
    t.add_argument(
        "--floor",
        type=float,
        default=0.0,
        help="gauss loss with --target truth: weight of the chi2 against the truth over the "
        "pixels where the truth is below 1%% of its peak (the decoder's floor, pulled to the "
        "truth from both sides) [default: 0, none]",
    )
    t.add_argument("--epochs", type=count(), default=40)
    t.add_argument(
        "--batch-size", type=count(2), default=64, help="at least 2 (BatchNorm) [default: 64]"
    )
    t.add_argument("--lr", type=positive, default=1e-3)
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
    t.add_argument(
        "--target",
        choices=("stamp", "truth"),
        default="stamp",
        help="what reconstructions are compared with: the noisy stamp (the ELBO), or the "
        "noiseless truth a simulated set keeps (gauss loss; the encoder still sees the noisy "
        "stamp) [default: stamp]",
    )
    t.add_argument(
        "--output",
        choices=("linear", "softmax"),
        default="linear",
        help="the decoder's head for flux-normalised stamps (gauss loss): linear pixel values, "
        "or softmax, log-intensities normalised over the stamp (every pixel positive, each "
        "stamp exactly its flux); --init may start either from the other [default: linear]",
    )
    t.add_argument(
        "--with-low-snr",
        action="store_true",
        help="also train on the rows that fail the quality cuts by their SNR alone, each in "
        "the split it is labelled with (the same rows fit-density --with-low-snr adds): the "
        "SNR cut removes large faint galaxies",
    )
    t.add_argument(
        "--no-resume",
        action="store_true",
        help="never continue a run: an output folder that holds one is refused (by default a "
        "rerun resumes it, if it was trained with the same data, loss and network)",
    )
    t.add_argument("--quiet", action="store_true")
    t.add_argument(
        "--init",
        default=None,
        help="start from these weights (fine-tuning; same preset and representation) instead of "
        "random ones; 'default' for the shipped model's, the recipe for new data (docs/cosmos.md). "
        "With a preset that only widens their decoder (wide-decoder, wider-decoder from "
        "compact), the decoder is widened computing the same function first (Net2WiderNet)",
    )
    t.set_defaults(func=_cmd_train)

    f = sub.add_parser(
        "fit-density",
        help="fit the latent density sampled by VAEGalaxy",
        description="Encode a dataset and fit a Gaussian mixture to the latent "
        "means; written beside the model (MODEL_density.npz) unless --out.",
    )
    f.add_argument("dataset")
    add_model_option(f)
    f.add_argument("--split", default="passes")
    f.add_argument("--components", type=count(), default=16)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--magnitudes",
        choices=("cosmos", "training"),
        default="cosmos",
        help="the F814W magnitudes sampled galaxies get by default (flux models): cosmos, the "
        "COSMOS F814W<23.5 catalog's distribution (a histogram stored with the density, read "
        "from the real data folder), each galaxy's latent and size drawn given its magnitude; "
        "training, the training set's own [default: cosmos]",
    )
    f.add_argument("--data-dir", default=None, help="real data folder (default: auto)")
    f.add_argument(
        "--with-low-snr",
        action="store_true",
        help="also fit the rows that fail the quality cuts by their SNR alone (the split's "
        "share of them): the SNR cut removes large faint galaxies, and without them sizes at "
        "faint magnitudes come out small",
    )
    f.add_argument(
        "--low-snr-brighter-than",
        type=float,
        default=None,
        metavar="MAG",
        help="with --with-low-snr: only those rows with a total F814W magnitude brighter than "
        "MAG (the faint ones bring floors into the samples; MODEL_CARD.md) [default: all]",
    )
    f.add_argument(
        "--out",
        default=None,
        help="output file [default: MODEL_density.npz beside a model that is not the shipped one]",
    )
    add_overwrite_option(f)
    f.set_defaults(func=_cmd_fit_density)

    fa = sub.add_parser(
        "fit-attributes",
        help="fit the attribute <-> latent models",
        description="Fit Hubble type / size / axis ratio <-> latent models on a "
        "simulated dataset, measure them, and write them beside the model.",
    )
    fa.add_argument("dataset", help="a simulated dataset (true attributes)")
    add_model_option(fa)
    fa.add_argument("--out", default=None)
    fa.add_argument("--max-rows", type=count(), default=10000)
    fa.add_argument("--n-per", type=count(), default=48, help="galaxies per requested attribute")
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
    add_overwrite_option(fa)
    fa.set_defaults(func=_cmd_fit_attributes)

    d = sub.add_parser(
        "draw",
        help="draw a scene of sampled galaxies (the main job)",
        description="Sample galaxies from the model, convolve them with a PSF, "
        "draw them into a scene with noise: FITS + PNG, and a gallery PNG of "
        "samples at HST resolution.",
    )
    d.add_argument("--out", default="out", help="output folder [default: out]")
    add_overwrite_option(d)
    add_model_option(d)
    d.add_argument("--n", type=count(), default=60, help="number of galaxies")
    d.add_argument("--size", type=count(16), default=512, help="image side, pixels")
    d.add_argument("--pixel-scale", type=positive, default=0.2, help="arcsec/pixel")
    d.add_argument("--psf", default="moffat", choices=("moffat", "gaussian", "airy", "none"))
    d.add_argument("--fwhm", type=positive, default=0.7, help="PSF FWHM, arcsec")
    d.add_argument("--noise", type=float, default=5.0, help="Gaussian noise sigma per pixel")
    d.add_argument("--sampling", default="density", choices=("density", "prior"))
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--gallery", type=count(), default=32, help="galaxies in the gallery PNG")
    d.add_argument(
        "--real",
        default=None,
        metavar="CATALOG",
        help="a COSMOS RealGalaxyCatalog (file or folder): also draw the same scene with its real "
        "galaxies (scene_vs_real.png) and a gallery of them (gallery_real.png)",
    )
    d.set_defaults(func=_cmd_draw)
