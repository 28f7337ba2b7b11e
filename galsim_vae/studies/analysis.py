"""The paper's analyses of a trained VAE (sections 4-6 and the appendix).

- latent SNR (eq. 6): ``SNR_i = std over the dataset of mu_i / mean of sigma_i``;
- the average galaxy (decoded mean mu) and traversals of the most informative latents from -3 to
  +3 standard deviations (Figs. 3, 7);
- reconstructions with residuals and chi2 per pixel (Fig. 6);
- histograms of each latent mean against N(0, 1) (Figs. 13-15);
- rotation invariance (Fig. 12, top): latents and reconstructions of copies rotated by 30 degrees
  (GalSim interpolation) compared with those of the originals;
- denoising (Fig. 12, bottom): Gaussian noise added to reach SNR 60, 40 and 20, and the
  reconstructions compared with the reconstruction of the original.

:func:`evaluate` runs them all and writes PNGs and a JSON of the numbers.
"""

from __future__ import annotations

from pathlib import Path

import galsim
import numpy as np

from .._utils import write_json
from ..errors import GalSimRangeError, GalSimValueError
from ..model import VAEModel, get_model
from ..pipeline._parallel import parallel_map
from ..pipeline.dataset import read_dataset, read_truths, select_split
from ..pipeline.metrics import SNR_BLOCK
from . import plots
from .sersic import fit_sersic_lsq

__all__ = [
    "latent_snr",
    "chi2_per_pixel",
    "traversals",
    "rotate_stamps",
    "rotation_invariance",
    "denoising",
    "evaluate",
]


def latent_snr(mu, sigma) -> np.ndarray:
    """Eq. 6: per latent, the standard deviation of the means over their mean sigma."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if mu.shape != sigma.shape or mu.ndim != 2 or len(mu) < 2:
        raise GalSimValueError("mu and sigma must be (N >= 2, latent_dim) arrays", mu.shape)
    return mu.std(axis=0) / sigma.mean(axis=0)


def chi2_per_pixel(model_images, images, noise_sigma) -> np.ndarray:
    """``mean((model - image)^2) / sigma^2`` per stamp (flux units)."""
    r = np.asarray(model_images, dtype=float) - np.asarray(images, dtype=float)
    s = np.asarray(noise_sigma, dtype=float).reshape(-1, *([1] * (r.ndim - 1)))
    return (r**2 / s**2).reshape(len(r), -1).mean(axis=1)


def traversals(model: VAEModel, mu, latents, steps=(-3, -2, -1, 0, 1, 2, 3)) -> np.ndarray:
    """Decoded images ``(len(latents), len(steps), S, S)`` stepping each latent from the mean mu.

    Latent ``j`` is set to ``mean(mu_j) + step * std(mu_j)``, the others kept at their means.
    """
    mu = np.asarray(mu, dtype=float)
    m, s = mu.mean(axis=0), mu.std(axis=0)
    zs = []
    for j in latents:
        for st in steps:
            z = m.copy()
            z[j] = m[j] + st * s[j]
            zs.append(z)
    return model.decode(np.array(zs)).reshape(len(latents), len(steps), *model.decode(m).shape[1:])


def rotate_stamps(images, angle_deg, scale=1.0) -> np.ndarray:
    """Stamps rotated by ``angle_deg`` about the central pixel with GalSim's interpolation."""
    out = []
    for im in np.asarray(images, dtype=float):
        n = im.shape[0]
        ii = galsim.InterpolatedImage(
            galsim.Image(im, scale=scale),
            x_interpolant="quintic",
            use_true_center=False,
            calculate_stepk=False,
            calculate_maxk=False,
        )
        out.append(
            ii.rotate(angle_deg * galsim.degrees)
            .drawImage(nx=n, ny=n, scale=scale, method="no_pixel", use_true_center=False)
            .array
        )
    return np.array(out)


def rotation_invariance(model: VAEModel, images, angle_deg=30.0) -> dict:
    """How much latents and reconstructions change when the galaxy is rotated.

    Returns:
        dict: ``latent_change`` (median over galaxies of ``|mu(rot) - mu| / |mu - mean mu|``),
        ``recon_residual`` (median of ``rms(R(rot(x))) - rot(R(x))) / rms(rot(R(x)))`` on the
        normalised scale) and the arrays they come from.
    """
    x = np.asarray(images, dtype=float)
    norm, _ = model.normalize(x)
    rot_norm, _ = model.normalize(rotate_stamps(x, angle_deg))
    mu0, _ = model.encode_normalized(norm)
    mu1, _ = model.encode_normalized(rot_norm)
    spread = np.linalg.norm(mu0 - mu0.mean(axis=0), axis=1)
    dz = np.linalg.norm(mu1 - mu0, axis=1) / np.where(spread > 0, spread, 1)
    r0 = model.decode(mu0)
    r1 = model.decode(mu1)
    r0_rot = rotate_stamps(r0, angle_deg)
    res = np.sqrt(((r1 - r0_rot) ** 2).mean(axis=(1, 2))) / np.sqrt((r0_rot**2).mean(axis=(1, 2)))
    return {
        "angle_deg": angle_deg,
        "latent_change": float(np.median(dz)),
        "recon_residual": float(np.median(res)),
        "recon_rotated": r1,
        "recon_then_rotated": r0_rot,
        "rotated_inputs": rot_norm,
    }


def denoising(model: VAEModel, images, noise_sigma, *, snrs=(60, 40, 20), seed=0) -> dict:
    """Reconstructions of galaxies with Gaussian noise added to reach each SNR.

    For each target SNR (the paper's metric: 4x4-block peak over noise sigma) the noise added has
    ``sigma_add^2 = (peak / SNR)^2 - sigma_0^2``; galaxies already noisier are skipped. The
    number reported per SNR is the median of ``rms(R(x + n) - R(x)) / rms(n)``: below 1 the model
    removes more noise than it lets through.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(images, dtype=float)
    s0 = np.asarray(noise_sigma, dtype=float)
    n = x.shape[1] // SNR_BLOCK
    peak = x.reshape(len(x), n, SNR_BLOCK, n, SNR_BLOCK).mean(axis=(2, 4)).max(axis=(1, 2))
    base = model.reconstruct(x)
    out = {"snr": [], "noise_passed": [], "n": [], "examples": []}
    for snr in snrs:
        var = (peak / snr) ** 2 - s0**2
        ok = var > 0
        if not ok.any():
            continue
        noisy = x[ok] + rng.normal(size=x[ok].shape) * np.sqrt(var[ok])[:, None, None]
        rec = model.reconstruct(noisy)
        ratio = np.sqrt(((rec - base[ok]) ** 2).mean(axis=(1, 2)) / var[ok])
        out["snr"].append(snr)
        out["noise_passed"].append(float(np.median(ratio)))
        out["n"].append(int(ok.sum()))
        out["examples"].append((np.flatnonzero(ok)[0], noisy[0], rec[0]))
    out["base"] = base
    return out


class _SersicChi2:
    """Per-process least-squares Sersic fits of stamps with their own PSFs and noise."""

    def __init__(self, stamps, psfs, sigmas, scales):
        self.stamps, self.psfs, self.sigmas, self.scales = stamps, psfs, sigmas, scales

    def __call__(self, i):
        f = fit_sersic_lsq(
            self.stamps[i], self.psfs[i], self.sigmas[i], scale=float(self.scales[i])
        )
        return f.chi2_per_pixel


def evaluate(
    model,
    dataset,
    out_dir,
    *,
    split="test",
    seed=0,
    n_show=8,
    n_traverse=6,
    sersic=False,
    nproc=1,
    progress=False,
    refine=0,
) -> dict:
    """Run every analysis of ``model`` on ``split`` of ``dataset``; PNGs and JSON in ``out_dir``.

    Parameters:
        model: a :class:`VAEModel`, a weights file, or ``"default"``.
        dataset: a dataset file.
        out_dir: output folder.
        split: which rows: ``train``, ``valid``, ``test``, ``passes`` or ``all``. [default: "test"]
        seed: seed of the added noise. [default: 0]
        n_show: galaxies in the reconstruction figure. [default: 8]
        n_traverse: latents in the traversal figure. [default: 6]
        sersic: also fit a PSF-convolved Sersic profile (least squares) to every stamp, with the
            stamp's own PSF, and compare chi2 per pixel. [default: False]
        nproc: processes for the Sersic fits (None: all cores). [default: 1]
        progress: show a progress bar of the Sersic fits. [default: False]
        refine: flux models: also reconstruct from each stamp's posterior mode, found in this
            many steps from the encoder's mean with the stamp's noise sigma
            (:meth:`VAEModel.refine_latents`), and report it beside the encoder's numbers
            (``refined_*``); 0 skips it. [default: 0]

    On a simulated dataset with truths (a ``TRUTH`` HDU) the floor is reported too: the chi2 per
    pixel of each noiseless truth against its noisy stamp, with the same noise estimate, which
    no reconstruction beats on average (``floor_*``, ``vae_over_floor_bright_half``: how far
    above it the VAE is, 0.1 = 10%), and the distance of the reconstructions to the truth
    itself (``median_chi2_to_truth_bright_half``: mean squared difference over the noise
    variance, 0 for a perfect reconstruction).

    Returns:
        dict: the numbers written to ``evaluate.json``.
    """
    if not isinstance(model, VAEModel):
        model = get_model(None if model in (None, "default") else model)
    if refine and model.representation != "flux":
        raise GalSimValueError("refine needs a flux model", model.representation)
    if refine < 0:
        raise GalSimRangeError("refine is a number of steps", refine, 0)
    images, table, psfs, _ = read_dataset(dataset)
    sel = select_split(table, split)
    if sel.sum() < 2:
        raise GalSimValueError("evaluate needs at least 2 stamps in the split", split)
    x = images[sel].astype(float)
    t = table[sel]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc = model.encode(x)
    recon = model.decode_flux(
        enc["mu"], **{k: v for k, v in enc.items() if k not in ("mu", "sigma")}
    )
    sig = np.asarray(t["noise_sigma"], float)
    chi2 = chi2_per_pixel(recon, x, sig)
    truths = read_truths(dataset)
    snr_img = np.asarray(t["snr"], float)
    bright = snr_img >= np.median(snr_img)
    lsnr = latent_snr(enc["mu"], enc["sigma"])
    order = np.argsort(lsnr)[::-1]
    show = np.argsort(-snr_img)[:: max(1, len(x) // n_show)][:n_show]
    plots.plot_reconstructions(
        x[show],
        recon[show],
        out / "reconstructions.png",
        sigma=sig[show],
        title=f"{Path(str(dataset)).name} [{split}]: input, reconstruction, residual (±5σ)",
    )
    plots.plot_latent_snr([lsnr], [Path(model.file_name).name], out / "latent_snr.png")
    avg = model.decode(enc["mu"].mean(axis=0))[0]
    grid = traversals(model, enc["mu"], order[:n_traverse])
    plots.plot_traversals(
        grid,
        (-3, -2, -1, 0, 1, 2, 3),
        order[:n_traverse],
        out / "traversals.png",
        title="Most informative latents, mean ± k std (centre: average galaxy)",
    )
    plots.plot_gallery(avg[None], out / "average_galaxy.png", ncol=1, title="average galaxy")
    plots.plot_latent_histograms(enc["mu"], out / "latent_histograms.png")
    rot = rotation_invariance(model, x[show], 30.0)
    den = denoising(model, x[show], sig[show], seed=seed)
    plots.plot_rotation_denoise(rot, den, x[show], out / "rotation_denoising.png")
    res = {
        "model": model.file_name,
        "dataset": str(dataset),
        "split": split,
        "n": int(len(x)),
        "median_chi2_per_pixel": float(np.median(chi2)),
        "median_chi2_per_pixel_bright_half": float(np.median(chi2[bright])),
        "representation": model.representation,
        "n_informative_latents_snr_gt_1": int((lsnr > 1).sum()),
        "latent_snr_sorted": lsnr[order].tolist(),
        "rotation_30deg_latent_change": rot["latent_change"],
        "rotation_30deg_recon_residual": rot["recon_residual"],
        "denoising_snr": den["snr"],
        "denoising_noise_passed": den["noise_passed"],
        "chi2_per_pixel": chi2.tolist(),
        "ident": [int(i) for i in t["ident"]],
    }
    if truths is not None:
        # The floor: the noiseless truth's chi2 against the noisy stamp, with the same noise
        # estimate. No reconstruction of these stamps can do better on average.
        floor = chi2_per_pixel(truths[sel].astype(float), x, sig)
        res["floor_median_chi2_per_pixel"] = float(np.median(floor))
        res["floor_median_chi2_per_pixel_bright_half"] = float(np.median(floor[bright]))
        res["vae_over_floor_bright_half"] = float(
            np.median(chi2[bright]) / np.median(floor[bright]) - 1
        )
        res["floor_chi2_per_pixel"] = floor.tolist()
        # The distance to the truth itself: the reconstruction against the noiseless image, in
        # units of the noise (0 for a perfect reconstruction).
        to_truth = chi2_per_pixel(recon, truths[sel].astype(float), sig)
        res["median_chi2_to_truth_bright_half"] = float(np.median(to_truth[bright]))
    if refine:
        z_r = model.refine_latents(enc["mu"], x, sig, steps=refine)
        rec_r = model.decode_flux(z_r, flux=enc["flux"])
        chi2_r = chi2_per_pixel(rec_r, x, sig)
        res["refine_steps"] = int(refine)
        res["refined_median_chi2_per_pixel"] = float(np.median(chi2_r))
        res["refined_median_chi2_per_pixel_bright_half"] = float(np.median(chi2_r[bright]))
        res["refined_latent_shift_median"] = float(
            np.median(np.linalg.norm(z_r - enc["mu"], axis=1))
        )
        if truths is not None:
            res["refined_over_floor_bright_half"] = float(
                np.median(chi2_r[bright]) / np.median(floor[bright]) - 1
            )
            to_truth_r = chi2_per_pixel(rec_r, truths[sel].astype(float), sig)
            res["refined_median_chi2_to_truth_bright_half"] = float(np.median(to_truth_r[bright]))
        res["refined_chi2_per_pixel"] = chi2_r.tolist()
        plots.plot_reconstructions_compared(
            x[show],
            {"encoder's mean": recon[show], f"refined, {refine} steps": rec_r[show]},
            out / "reconstructions_refined.png",
            sigma=sig[show],
            title=f"{Path(str(dataset)).name} [{split}]: the encoder's latents and the refined "
            "ones (residuals ±5σ)",
        )
    if sersic:
        if psfs is None:
            raise GalSimValueError("the dataset has no PSFS HDU for the Sersic fits", dataset)
        own_psfs = np.asarray(psfs)[np.asarray(t["psf_index"], dtype=int)]
        args = (x, own_psfs, sig, np.asarray(t["pixel_scale"], dtype=float))
        chi2_s = np.array(
            parallel_map(
                _SersicChi2,
                args,
                range(len(x)),
                nproc=nproc,
                chunk=16,
                desc="Sersic fits",
                progress=progress,
            )
        )
        res["sersic_median_chi2_per_pixel"] = float(np.median(chi2_s))
        res["sersic_median_chi2_per_pixel_bright_half"] = float(np.median(chi2_s[bright]))
        res["vae_better_than_sersic_fraction_bright_half"] = float(
            np.mean(chi2[bright] <= chi2_s[bright])
        )
        res["sersic_chi2_per_pixel"] = chi2_s.tolist()
        if refine:
            res["refined_better_than_sersic_fraction_bright_half"] = float(
                np.mean(chi2_r[bright] <= chi2_s[bright])
            )
        if truths is not None:
            res["sersic_over_floor_bright_half"] = float(
                np.median(chi2_s[bright]) / np.median(floor[bright]) - 1
            )
        plots.plot_chi2_comparison(chi2, chi2_s, snr_img, out / "chi2_vae_vs_sersic.png")
    write_json(out / "evaluate.json", res)
    return res
