"""Fine-tuning on the real galaxies, measured by k-fold cross-validation.

A hundred real galaxies are too few to train on, but they can fine-tune a model trained on
simulations, provided the gain is measured only on real galaxies the fine-tuning never saw. The
real stamps that pass the cuts are split into ``folds`` groups at random; for each fold the model
is fine-tuned on the other folds' galaxies (augmented, and mixed with simulated training stamps so
that it does not forget them) and both the starting and the fine-tuned model reconstruct the
fold's galaxies. The report gives, fold by fold and pooled, the median chi2 per pixel of the
reconstructions against the best-fit PSF-convolved Sersic profile of each galaxy and against the
floor of 1.

Augmentation keeps what can be kept of a stamp's physics: a rotation by any angle and a flip
about the stamp centre, a dilation by up to 10% (which dilates the HST PSF in the stamp too: a
small change of a galaxy's size at a slightly different PSF), and a new realisation of extra white
noise at half the stamp's sigma. Fluxes need no augmentation: the flux representation divides
each stamp by its flux.
"""

from __future__ import annotations

import json
from pathlib import Path

import galsim
import numpy as np
import torch

from .._utils import atomic_path, write_json
from ..checkpoint import read_metadata
from ..errors import GalSimValueError
from ..model import VAEModel, get_model
from ..nn import VAEConfig, build_vae
from ..pipeline.dataset import StampDataset, read_dataset
from ..stamp import flux_normalize
from ..training.loop import TrainConfig, train
from ..training.losses import VAELoss
from .analysis import chi2_per_pixel
from .sersic import fit_sersic_lsq

__all__ = ["augment_real", "crossval_real"]


def augment_real(images, sigmas, copies, rng):
    """``copies`` augmented versions of each stamp, and their measured noise sigmas.

    Each copy: a rotation by a uniform angle and a flip with probability 1/2 about the stamp
    centre, a dilation by ``exp(U(-0.1, 0.1))`` (flux kept), quintic interpolation (the corners a
    rotation brings in from outside the stamp padded with white noise of the stamp's sigma),
    then white noise of half the stamp's sigma added; the copy's sigma is ``sqrt(1.25)`` times
    the stamp's.

    Parameters:
        images: ``(N, S, S)`` stamps, flux units.
        sigmas: ``(N,)`` noise sigmas.
        copies: copies per stamp.
        rng: ``numpy.random.Generator``.

    Returns:
        tuple: ``(images (N * copies, S, S) float32, sigmas (N * copies,))``.
    """
    images = np.asarray(images, dtype=float)
    n, s = len(images), images.shape[-1]
    out, sig = [], []
    for a, sg in zip(images, np.broadcast_to(sigmas, (n,))):
        ii = galsim.InterpolatedImage(
            galsim.Image(a, scale=1.0),
            x_interpolant="quintic",
            use_true_center=False,
            noise_pad=float(sg) ** 2,
            noise_pad_size=2 * s,
            rng=galsim.BaseDeviate(int(rng.integers(1, 2**31))),
        )
        for _ in range(int(copies)):
            g = ii.rotate(rng.uniform(0, 360) * galsim.degrees).dilate(
                float(np.exp(rng.uniform(-0.1, 0.1)))
            )
            if rng.random() < 0.5:
                g = g.transform(-1, 0, 0, 1)
            im = g.drawImage(nx=s, ny=s, scale=1.0, method="no_pixel", use_true_center=False)
            arr = im.array + rng.normal(0, 0.5 * sg, im.array.shape)
            out.append(arr.astype(np.float32))
            sig.append(float(sg) * np.sqrt(1.25))
    return np.array(out), np.array(sig)


def _folds(n, k, seed):
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[i::k]) for i in range(k)]


def _flux_stamps(images, sigmas):
    norm, flux = flux_normalize(images)
    return norm.astype(np.float32), (np.asarray(sigmas) * images.shape[-1] / flux).astype(
        np.float32
    )


def _fine_tune(model_file, real_x, real_sig, sims, out_dir, *, copies, epochs, lr, seed, device):
    """Fine-tune the model of ``model_file`` on augmented real stamps plus simulated ones."""
    meta = read_metadata(model_file)
    rng = np.random.default_rng(seed)
    ax, asig = augment_real(real_x, real_sig, copies, rng)
    keep = ax.sum(axis=(1, 2)) > 0
    rx, rs = _flux_stamps(ax[keep], asig[keep])
    tx = np.concatenate([rx, sims["train"][0]])
    ts = np.concatenate([rs, sims["train"][1]])
    net = build_vae(VAEConfig.from_json(meta["architecture"]))
    from ..checkpoint import load_state_dict

    tensors, _ = load_state_dict(model_file)
    net.load_state_dict(tensors)
    loss = VAELoss(meta.get("loss", "gauss"), float(meta.get("loss_param", 1.0)))
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=64,
        lr=lr,
        lr_patience=epochs,
        stop_patience=epochs + 1,
        seed=seed,
        device=device,
    )
    train(
        net,
        torch.from_numpy(tx[:, None]),
        torch.from_numpy(sims["valid"][0][:, None]),
        loss=loss,
        out_dir=out_dir,
        config=cfg,
        pixel_scale=float(meta.get("pixel_scale", 0.03)),
        dataset={"file": "real fine-tuning", "n_real_augmented": int(len(rx))},
        progress=False,
        train_sigma=torch.from_numpy(ts),
        valid_sigma=torch.from_numpy(sims["valid"][1]),
        init=meta["sha256"],
    )
    return Path(out_dir) / "last.safetensors"


def crossval_real(
    real_dataset,
    sim_dataset,
    out_dir,
    *,
    model=None,
    folds=5,
    epochs=6,
    lr=1e-4,
    copies=8,
    n_sim=4000,
    seed=0,
    device="cpu",
    final=False,
    max_real=None,
    progress=True,
) -> dict:
    """k-fold cross-validation of fine-tuning ``model`` on the real galaxies.

    Parameters:
        real_dataset: dataset of real stamps (its rows that pass the cuts are used).
        sim_dataset: the model's simulated training set: ``n_sim`` stamps of its train split
            are mixed into each fine-tuning, and 1,000 of its valid split are the (unused for
            selection) validation loss.
        out_dir: output folder: ``fold<k>/`` runs, ``crossval.json``, ``crossval.md``.
        model: weights file of a flux-representation model; the shipped one when None.
        folds: number of folds. [default: 5]
        epochs: fine-tuning epochs; the last epoch's weights are used. [default: 6]
        lr: fine-tuning learning rate. [default: 1e-4]
        copies: augmented copies of each real galaxy. [default: 8]
        n_sim: simulated stamps mixed in. [default: 4000]
        seed: seed of the folds, the augmentation and the training. [default: 0]
        device: torch device. [default: "cpu"]
        final: also fine-tune on every real galaxy (``final/last.safetensors``), the model to
            ship if the folds say fine-tuning helps. [default: False]
        max_real: use only the first this many real stamps that pass. [default: None, all]
        progress: print a line per fold. [default: True]

    A fold whose ``fold<k>/fold.json`` exists is not run again: an interrupted run resumes.

    Returns:
        dict: the numbers written to ``crossval.json``.
    """
    base = get_model(model)
    if base.representation != "flux":
        raise GalSimValueError("crossval fine-tunes flux-representation models", base.file_name)
    folds = int(folds)
    if folds < 2:
        raise GalSimValueError("need at least 2 folds", folds)
    ri, rt, rpsfs, _ = read_dataset(real_dataset)
    if rpsfs is None:
        raise GalSimValueError("the real dataset has no PSFS HDU", str(real_dataset))
    r = np.flatnonzero(np.asarray(rt["passes"], dtype=bool))[:max_real]
    if len(r) < 2 * folds:
        raise GalSimValueError(f"need at least {2 * folds} real stamps passing the cuts", len(r))
    x = ri[r].astype(float)
    sig = np.asarray(rt["noise_sigma"], dtype=float)[r]
    snr = np.asarray(rt["snr"], dtype=float)[r]
    scale = np.asarray(rt["pixel_scale"], dtype=float)[r]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    sims = {}
    for split, n in (("train", n_sim), ("valid", 1000)):
        ds = StampDataset(sim_dataset, split, "flux")
        pick = np.random.default_rng(seed).permutation(len(ds))[:n]
        sims[split] = (ds.images[pick], ds.sigma[pick])

    # The yardsticks, once: each galaxy's best-fit Sersic profile and the starting model.
    fits = [
        fit_sersic_lsq(a, rpsfs[int(k)], s_, scale=float(sc))
        for a, k, s_, sc in zip(x, np.asarray(rt["psf_index"])[r], sig, scale)
    ]
    chi_sersic = np.array([f.chi2_per_pixel for f in fits])
    chi_base = chi2_per_pixel(base.reconstruct(x), x, sig)

    chi_tuned = np.full(len(r), np.nan)
    per_fold = []
    for k, held in enumerate(_folds(len(r), folds, seed)):
        fdir = out / f"fold{k}"
        done = fdir / "fold.json"
        settings = {
            "model_sha256": base.metadata["sha256"],
            "real_dataset": Path(real_dataset).name,
            "real_idents": [int(i) for i in np.asarray(rt["ident"])[r]],
            "sim_dataset": Path(sim_dataset).name,
            "epochs": epochs,
            "lr": lr,
            "copies": copies,
            "n_sim": n_sim,
            "seed": seed,
            "folds": folds,
            "n_real": int(len(r)),
        }
        if done.is_file():
            rec = json.loads(done.read_text())
            if rec.get("settings") != settings:
                raise GalSimValueError(
                    f"{fdir} is a fold of another cross-validation (other model or settings); "
                    "use another output folder or --overwrite",
                    str(fdir),
                )
        else:
            train_rows = np.setdiff1d(np.arange(len(r)), held)
            w = _fine_tune(
                base.file_name,
                x[train_rows],
                sig[train_rows],
                sims,
                fdir,
                copies=copies,
                epochs=epochs,
                lr=lr,
                seed=seed + k,
                device=device,
            )
            tuned = VAEModel(w)
            ct = chi2_per_pixel(tuned.reconstruct(x[held]), x[held], sig[held])
            rec = {
                "fold": k,
                "settings": settings,
                "held": [int(i) for i in r[held]],
                "n_train_real": int(len(train_rows)),
                "chi2_base": chi_base[held].tolist(),
                "chi2_tuned": ct.tolist(),
                "chi2_sersic": chi_sersic[held].tolist(),
            }
            write_json(done, rec)
        chi_tuned[held] = rec["chi2_tuned"]
        per_fold.append(
            {
                "fold": k,
                "n_held": len(held),
                "n_train_real": rec["n_train_real"],
                **{
                    f"median_chi2_{w_}": float(np.median(rec[f"chi2_{w_}"]))
                    for w_ in ("base", "tuned", "sersic")
                },
            }
        )
        if progress:
            f = per_fold[-1]
            print(
                f"fold {k}: {f['n_held']} held-out galaxies, median chi2/pixel base "
                f"{f['median_chi2_base']:.3f}, fine-tuned {f['median_chi2_tuned']:.3f}, Sersic "
                f"{f['median_chi2_sersic']:.3f}",
                flush=True,
            )

    bright = snr >= np.median(snr)
    pooled = {}
    for name, sel in (("all", np.ones(len(r), dtype=bool)), ("brighter_half", bright)):
        pooled[name] = {
            "n": int(sel.sum()),
            **{
                f"median_chi2_{w_}": float(np.median(c[sel]))
                for w_, c in (("base", chi_base), ("tuned", chi_tuned), ("sersic", chi_sersic))
            },
            "tuned_better_than_base": float(np.mean(chi_tuned[sel] < chi_base[sel])),
            "tuned_better_than_sersic": float(np.mean(chi_tuned[sel] < chi_sersic[sel])),
            "base_better_than_sersic": float(np.mean(chi_base[sel] < chi_sersic[sel])),
        }
    b = pooled["brighter_half"]
    res = {
        "real_dataset": str(real_dataset),
        "sim_dataset": str(sim_dataset),
        "model": base.file_name,
        "model_sha256": base.metadata["sha256"],
        "settings": {
            "folds": folds,
            "epochs": epochs,
            "lr": lr,
            "copies": copies,
            "n_sim": n_sim,
            "seed": seed,
        },
        "n_real": int(len(r)),
        "folds": per_fold,
        "pooled": pooled,
        "fine_tuning_helps": helps(b),
    }
    if final:
        # Always through train: it resumes an interrupted run, refuses one of other starting
        # weights or data, and returns at once when the run is complete.
        w = _fine_tune(
            base.file_name,
            x,
            sig,
            sims,
            out / "final",
            copies=copies,
            epochs=epochs,
            lr=lr,
            seed=seed + folds,
            device=device,
        )
        res["final_model"] = str(w)
    write_json(out / "crossval.json", res)
    with atomic_path(out / "crossval.md") as tmp:
        tmp.write_text(_markdown(res))
    return res


def helps(brighter_half) -> bool:
    """The verdict on fine-tuning, from the pooled held-out brighter half: its median chi2 falls
    and most of its galaxies are reconstructed better (a median can fall by a percent while most
    galaxies get worse)."""
    b = brighter_half
    return bool(
        b["median_chi2_tuned"] < b["median_chi2_base"] and b["tuned_better_than_base"] > 0.5
    )


def _markdown(res) -> str:
    s = res["settings"]
    lines = [
        "# Fine-tuning on the real galaxies, cross-validated",
        "",
        f"{res['n_real']} real galaxies of `{Path(res['real_dataset']).name}` that pass the cuts, "
        f"in {s['folds']} folds. Each fold's model is `{Path(res['model']).name}` fine-tuned "
        f"for {s['epochs']} epochs (learning rate {s['lr']:g}) on the other folds' galaxies "
        f"({s['copies']} augmented copies each: any rotation, flips, 10% dilations, extra noise) "
        f"mixed with {s['n_sim']} simulated training stamps of "
        f"`{Path(res['sim_dataset']).name}`, then measured on the fold's galaxies, which it "
        "never saw. Median chi2 per pixel of the reconstructions (the floor is 1), with the "
        "best-fit Sersic profile of each galaxy. Written by `galsim-vae crossval`.",
        "",
        "| fold | held out | trained on | starting model | fine-tuned | Sersic |",
        "|---|---|---|---|---|---|",
    ]
    for f in res["folds"]:
        lines.append(
            f"| {f['fold']} | {f['n_held']} | {f['n_train_real']} | "
            f"{f['median_chi2_base']:.3f} | {f['median_chi2_tuned']:.3f} | "
            f"{f['median_chi2_sersic']:.3f} |"
        )
    for name, p in res["pooled"].items():
        lines.append(
            f"| {name.replace('_', ' ')} | {p['n']} | | {p['median_chi2_base']:.3f} | "
            f"{p['median_chi2_tuned']:.3f} | {p['median_chi2_sersic']:.3f} |"
        )
    b = res["pooled"]["brighter_half"]
    lines += [
        "",
        f"On the brighter half the fine-tuned reconstructions are better than the starting "
        f"model's for {b['tuned_better_than_base']:.0%} of the galaxies and better than the "
        f"Sersic fit for {b['tuned_better_than_sersic']:.0%} (the starting model: "
        f"{b['base_better_than_sersic']:.0%}). Fine-tuning "
        + ("helps" if res["fine_tuning_helps"] else "does not help")
        + " (it helps where the brighter half's median falls and most of its galaxies improve).",
        "",
    ]
    return "\n".join(lines)
