"""Are generated galaxies real enough? Statistics of real, VAE and parametric galaxies compared.

On the same footing (HST 0.03"/px stamps, the real stamp's PSF content, and COSMOS correlated noise
at each real stamp's catalog noise level), these populations are measured:

- ``real``: the real stamps that pass the cuts (held out: never trained on);
- ``vae_recon``: VAE reconstructions of them (plus noise);
- ``vae_density`` / ``vae_prior``: samples from the learned latent density / the unit Gaussian, each
  paired with a random real galaxy for its flux scale (normalisation) and noise, their decoded sky
  removed as :class:`VAEGalaxy` removes it (the attribute file's sky predictor). A density that
  draws fluxes draws each sample at its real galaxy's magnitude and puts it through the cuts the
  real galaxies passed, the flux-in-stamp cut only where its real galaxy's own postage stamp was
  larger than the stamp (:data:`SAMPLE_FLUX_CUT`) (``vae_density``;
  the first draws without them: ``vae_density_unselected``);
- ``vae_attributes``: galaxies generated from each real galaxy's measured size and axis ratio
  (:func:`galsim_vae.studies.attribute_fit.measure_sersic`, the attribute models' own size
  estimator) and type (the inverse attribute model), when the model has attribute models;
- ``sersic``: the best-fit PSF-convolved Sersic profile of each real galaxy (plus noise).

Statistics: HSM adaptive-moment size and ellipticity (``galsim.hsm``), and Gini, M20,
concentration, asymmetry, smoothness and multimode (M of M-I-D) from statmorph. For each statistic
the Wasserstein distance of each population to the real one (``scipy.stats.wasserstein_distance``).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import galsim
import numpy as np
from scipy.stats import wasserstein_distance

from .._utils import as_deviate, atomic_path, write_json
from ..errors import GalSimValueError, GalSimWarning
from ..galaxy import VAEGalaxy, guard_refuses
from ..model import get_model
from ..pipeline.dataset import cuts_from_header, read_dataset
from ..pipeline.metrics import stamp_metrics
from .attribute_fit import measure_sersic
from .plots import plot_real_vs_generated, plot_validation
from .population import magnitudes
from .sersic import fit_sersic_lsq

__all__ = [
    "STATISTICS",
    "hsm_statistics",
    "morphology_statistics",
    "validate",
    "compare_simulator",
]

STATISTICS = (
    "hsm_sigma",
    "hsm_e",
    "gini",
    "m20",
    "concentration",
    "asymmetry",
    "smoothness",
    "multimode",
)


def hsm_statistics(images, scale=0.03) -> dict:
    """Adaptive-moment sigma (arcsec) and ellipticity magnitude per stamp (NaN where HSM fails)."""
    sig, e = [], []
    for a in images:
        try:
            m = galsim.hsm.FindAdaptiveMom(galsim.Image(np.asarray(a, dtype=float), scale=scale))
            sig.append(m.moments_sigma * scale)
            e.append(m.observed_shape.e)
        except galsim.GalSimHSMError:
            sig.append(np.nan)
            e.append(np.nan)
    return {"hsm_sigma": np.array(sig), "hsm_e": np.array(e)}


def morphology_statistics(images, noise_sigma) -> dict:
    """statmorph's Gini, M20, concentration, asymmetry, smoothness and multimode per stamp.

    The segmentation is the 2-sigma, 5-pixel source (photutils) that covers the central pixel.
    Stamps where statmorph flags a failure (flag >= 2) or finds no source get NaN.
    """
    import statmorph
    from photutils.segmentation import detect_sources

    keys = ("gini", "m20", "concentration", "asymmetry", "smoothness", "multimode")
    out = {k: [] for k in keys}
    for a, s in zip(images, np.broadcast_to(noise_sigma, (len(images),))):
        a = np.asarray(a, dtype=float)
        vals = dict.fromkeys(keys, np.nan)
        # statmorph and photutils warn about faint or odd sources; failures are caught by the
        # flag below, and a stamp without a source gets NaN.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = detect_sources(a, 2 * s, n_pixels=5)
            if seg is not None:
                c = a.shape[0] // 2
                lab = seg.data[c, c]
                segmap = ((seg.data == lab) if lab else (seg.data > 0)).astype(int)
                m = statmorph.source_morphology(a, segmap, weightmap=np.full_like(a, s))[0]
                if m.flag < 2:
                    vals = {k: float(getattr(m, k)) for k in keys}
        for k in keys:
            out[k].append(vals[k])
    return {k: np.array(v) for k, v in out.items()}


def _stats(images, sigma, scale):
    return {**hsm_statistics(images, scale), **morphology_statistics(images, sigma)}


def _median(v):
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


def _distance(a, b):
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(wasserstein_distance(a, b)) if len(a) and len(b) else float("nan")


def validate(
    real_dataset, out_dir, *, model=None, seed=0, n_samples=None, max_real=None, loss_summary=None
) -> dict:
    """Compare real, VAE and Sersic galaxies; write ``validation.md``, PNGs and ``.json``.

    Parameters:
        real_dataset: dataset file of real galaxies (e.g. from ``cosmos_btk100``); its passing
            rows are used.
        out_dir: output folder.
        model: weights file; the shipped model when None. [default: None]
        seed: seed of the added noise and of the samples. [default: 0]
        n_samples: galaxies per sampled population; as many as real ones when None.
        max_real: use at most this many real stamps (the first ones). [default: None, all]
        loss_summary: the ``summary.json`` of ``scripts/compare_losses.sh`` (the paper's
            comparison of its three losses by latent SNR), added to the report. [default: None]

    Returns:
        dict: the numbers written to ``validation.json``.
    """
    losses = None
    if loss_summary is not None:  # checked before any work
        p = Path(loss_summary)
        if not p.is_file():
            raise GalSimValueError("loss summary file not found", str(p))
        losses = json.loads(p.read_text())
    m = get_model(model)
    images, table, psfs, header = read_dataset(real_dataset)
    cuts = cuts_from_header(header, real_dataset)
    sel = np.flatnonzero(np.asarray(table["passes"], dtype=bool))[:max_real]
    if len(sel) < 5:
        raise GalSimValueError("validate needs at least 5 real stamps passing the cuts", len(sel))
    if psfs is None:
        raise GalSimValueError("the real dataset has no PSFS HDU", str(real_dataset))
    x = images[sel].astype(float)
    t = table[sel]
    sig = np.asarray(t["noise_sigma"], dtype=float)
    scale = float(np.median(t["pixel_scale"]))
    rng = np.random.default_rng(seed)
    n = len(x) if n_samples is None else int(n_samples)
    if n < 1:
        raise GalSimValueError("n_samples must be at least 1", n_samples)

    # Every generated stamp gets the noise its paired real stamp has: COSMOS correlated noise
    # (the real stamps' noise correlation function) at the real galaxy's catalog noise variance,
    # as the simulator adds it (the border estimate of correlated noise reads low); white noise at
    # the measured sigma where there is no correlation file.
    cosmos_noise = _cosmos_noise(seed)  # the correlation function, read once
    have_cf = cosmos_noise is not None
    noise_sigma = sig.copy()
    if have_cf and "catalog_noise_variance" in t.colnames:
        v = np.asarray(t["catalog_noise_variance"], dtype=float)
        noise_sigma = np.where(np.isfinite(v) & (v > 0), np.sqrt(np.abs(v)), sig)
    noise_kind = "COSMOS correlated" if have_cf else "white"
    # One noise stream per population, seeded by the seed and the population: a population's
    # noise does not depend on how many draws another one took (the density samples' selection
    # takes more or fewer with each model), so the Sersic fits' numbers are the same whatever
    # model is validated.
    streams = {}

    def noisy(imgs, idx, population):
        # imgs plus the noise of the real stamps idx
        s_ = noise_sigma[np.asarray(idx, dtype=int)]
        if population not in streams:
            k = 100 + _NOISE_STREAMS.index(population)
            streams[population] = (
                cosmos_noise.copy(rng=as_deviate(seed + k))
                if have_cf
                else np.random.default_rng(seed + k)
            )
        noise = streams[population]
        if not have_cf:
            return imgs + noise.normal(size=imgs.shape) * s_[:, None, None]
        return _add_noise(imgs, s_, scale, noise)

    pops = {"real": (x, sig)}
    enc = m.encode(x)
    rec = m.reconstruct(x)
    pops["vae_recon"] = (noisy(rec, np.arange(len(x)), "vae_recon"), sig)
    try:
        am = m.attributes
    except GalSimValueError:
        am = None

    # A sampled galaxy is a whole galaxy: it gets the total flux of the real galaxy it is paired
    # with (its stamp then holds what fits, as a real stamp does).
    total_flux = (
        np.asarray(t["flux_total"], dtype=float) if "flux_total" in t.colnames else enc["flux"]
    )

    def decode_like(z, idx, pixel_scale=None, angles=None, flux=None):
        # Latents decoded with the flux of real stamps idx (``flux``, else their encoded flux),
        # their sky removed as VAEGalaxy removes it (a flux model's decoded sky is zero
        # already). A flux model's galaxies at their own pixel scales are drawn onto the real
        # stamps' pixels, as a real galaxy of that size is in its stamp.
        # Returns the images, which latents gave one (a flux model's latent that decodes to no
        # positive flux, from the prior's or the density's tails, cannot be drawn, and is counted
        # instead) and which drawn ones the sampling guard of VAEGalaxy.sample lets through
        # (border sky and negative light; all of them for other models).
        if m.representation == "flux":
            gals = VAEGalaxy.from_latents(
                z,
                m,
                flux=(enc["flux"] if flux is None else flux)[idx],
                pixel_scale=pixel_scale if pixel_scale is not None else m.pixel_scale,
            )
            ok = np.array([g._drawable for g in gals], dtype=bool)
            guard_ok = np.array(
                [not any(guard_refuses(g)) for g, k in zip(gals, ok) if k], dtype=bool
            )
            if angles is not None:  # the attribute model's galaxies lie along x: turned at random
                gals = [g.rotate(a * galsim.degrees) for g, a in zip(gals, angles)]
            size = x.shape[-1]
            kw = dict(nx=size, ny=size, scale=scale, method="no_pixel", use_true_center=False)
            imgs = np.array([g.drawImage(**kw).array for g, k in zip(gals, ok) if k])
            return imgs.reshape(-1, size, size), ok, guard_ok
        lo, hi = enc["norm_min"][idx], enc["norm_max"][idx]
        imgs = m.decode_flux(z, *m.sky_free_constants(z, lo, hi))
        return imgs, np.ones(len(z), dtype=bool), np.ones(len(z), dtype=bool)

    pair = rng.integers(0, len(x), n)
    undrawable = {}
    selection = None
    for mode in ("density", "prior"):
        if mode == "density" and m.density is None:
            continue
        kw = {}
        joint = mode == "density" and "log10_flux" in m.density.aux_names
        if joint:
            # Drawn at the magnitude of the real galaxy whose flux and noise they are given:
            # sizes and shapes go with that flux.
            kw["magnitude"] = magnitudes(total_flux[pair])
        sample_rng = galsim.BaseDeviate(seed + 1)
        with warnings.catch_warnings():  # a real galaxy fainter than any training stamp
            warnings.filterwarnings("ignore", "log10_flux values lie outside", GalSimWarning)
            pop = m.sample_population(n, sample_rng, sampling=mode, **kw)
        if not joint:
            imgs, ok, _ = decode_like(pop["latent"], pair, pop["pixel_scale"], flux=total_flux)
            pops[f"vae_{mode}"] = (noisy(imgs, pair[ok], f"vae_{mode}"), sig[pair][ok])
            undrawable[f"vae_{mode}"] = int((~ok).sum())
            continue
        # The real galaxies are those that passed the cuts; at faint magnitudes that keeps the
        # compact ones. Samples drawn at their magnitudes go through the same cuts, each redrawn
        # until it passes; the first draws, cuts aside, are kept as vae_density_unselected.
        # The flux-in-stamp cut only where it tested the paired real galaxy: a real galaxy's
        # flux fraction is of the sum of its own COSMOS postage stamp, and one no larger than
        # the stamp passes it by construction (SAMPLE_FLUX_CUT).
        flux_cut = np.ones(len(x), dtype=bool)
        if SAMPLE_FLUX_CUT == "pairs" and "original_size" in t.colnames:
            flux_cut = np.asarray(t["original_size"]) > x.shape[-1]
        first, selected, selection = _selected_samples(
            m,
            pair,
            sig,
            total_flux,
            cuts,
            flux_cut,
            lambda z, idx, ps: decode_like(z, idx, ps, flux=total_flux),
            lambda imgs, idx: noisy(imgs, idx, "vae_density"),
            sample_rng,
            pop,
        )
        pops["vae_density_unselected"] = first
        pops["vae_density"] = selected
        undrawable["vae_density_unselected"] = selection["first_draw"]["undrawable"]
        # For comparison, how often real galaxies of those magnitudes (within 0.5 mag of each
        # paired one, in the whole real dataset) passed the same cuts.
        mag_all = magnitudes(
            table["flux_total"] if "flux_total" in table.colnames else table["flux"]
        )
        passes_all = np.asarray(table["passes"], dtype=bool)
        selection["flux_cut"] = SAMPLE_FLUX_CUT
        selection["pairs_with_flux_cut"] = float(flux_cut[pair].mean())
        near = np.abs(mag_all[None, :] - magnitudes(total_flux[pair])[:, None]) < 0.5
        frac = [passes_all[row].mean() for row in near if row.any()]
        selection["real_fraction_passing_near_these_magnitudes"] = (
            float(np.mean(frac)) if frac else None
        )
        selection["density_fitted_on"] = {
            k: m.density.meta.get(k) for k in ("dataset", "split", "with_low_snr")
        }
    fits = [
        fit_sersic_lsq(a, psfs[int(k)], s, scale=scale) for a, k, s in zip(x, t["psf_index"], sig)
    ]
    models = np.array([f.model for f in fits])
    pops["sersic"] = (noisy(models, np.arange(len(x)), "sersic"), sig)
    if am is not None:
        own = np.asarray(t["pixel_scale"], dtype=float) if am.scale_model else None
        est = am.estimate(enc["mu"], own)
        meas = measure_sersic(x, scale=np.asarray(t["pixel_scale"], dtype=float))
        lo, hi = am.a["hlr_range"]
        hlr = np.clip(meas["half_light_radius"], lo, hi)
        q = np.clip(meas["axis_ratio"], *am.a["q_range"])
        with warnings.catch_warnings():  # real galaxies outside the training attributes
            warnings.simplefilter("ignore", galsim.GalSimWarning)
            pa = am.sample_population(est["hubble_type"], hlr, q, galsim.BaseDeviate(seed + 2))
        # Turned by random angles as VAEGalaxy.from_attributes turns them (the statistics do not
        # depend on orientation; the pictures would show them all along x).
        turn = rng.uniform(0, 360, len(x))
        imgs, ok, _ = decode_like(pa["latent"], np.arange(len(x)), pa["pixel_scale"], turn)
        pops["vae_attributes"] = (noisy(imgs, np.flatnonzero(ok), "vae_attributes"), sig[ok])
        undrawable["vae_attributes"] = int((~ok).sum())
    stats = {name: _stats(imgs, s, scale) for name, (imgs, s) in pops.items()}
    dist = {
        name: {k: _distance(stats[name][k], stats["real"][k]) for k in STATISTICS}
        for name in pops
        if name != "real"
    }
    wins = {
        name: int(sum(dist[name][k] < dist["sersic"][k] for k in STATISTICS))
        for name in dist
        if name != "sersic"
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_validation(stats, out / "validation_statistics.png")
    # The pictures behind the numbers: the brightest real galaxies, their reconstructions, and
    # the brightest samples of each generated population, with the same noise treatment.
    show = np.argsort(-np.abs(x).max(axis=(1, 2)) / sig)[:10]
    rows = {"real": x[show], "reconstruction": pops["vae_recon"][0][show]}
    sigs = {"real": sig[show], "reconstruction": sig[show]}
    for name in ("vae_density", "vae_attributes"):
        if name in pops and len(pops[name][0]):
            imgs, s_ = pops[name]
            pick = np.argsort(-imgs.max(axis=(1, 2)) / s_)[:10]
            label = "sample (density)" if name == "vae_density" else "from attributes"
            rows[label], sigs[label] = imgs[pick], s_[pick]
    rows["Sersic fit"], sigs["Sersic fit"] = pops["sersic"][0][show], sig[show]
    plot_real_vs_generated(rows, sigs, out / "validation_galaxies.png", scale=scale)
    # The distance sampling alone gives between the real galaxies and a population of the same
    # size drawn from their own distribution (the Sersic fits, paired with the real galaxies,
    # can come closer than that on sizes and shapes).
    # Floors for a population of the sampled size (the reconstructions, the Sersic fits and the
    # attribute galaxies have one per real galaxy: as many, unless n_samples says otherwise).
    floor = {
        k: sampling_floor(stats["real"][k], np.isfinite(stats["real"][k]).sum(), n, seed=seed + 3)
        for k in STATISTICS
    }
    res = {
        "real_dataset": str(real_dataset),
        "model": m.file_name,
        "n_real": int(len(x)),
        "n_samples": n,
        "wasserstein_to_real": dist,
        "wasserstein_sampling_floor": floor,
        "statistics_closer_than_sersic": wins,
        "n_undrawable": undrawable,
        "density_selection": selection,
        "added_noise": noise_kind,
        "n_statistics": len(STATISTICS),
        "medians": {p: {k: _median(v) for k, v in s.items()} for p, s in stats.items()},
    }
    if losses is not None:
        res["loss_comparison"] = losses
    write_json(out / "validation.json", res)
    with atomic_path(out / "validation.md") as tmp:
        tmp.write_text(_markdown(res))
    return res


#: The populations that get noise, each its own stream (:func:`validate`).
_NOISE_STREAMS = ("vae_recon", "vae_density", "vae_prior", "sersic", "vae_attributes")

#: Rounds of redrawing the density samples that fail the real galaxies' cuts, before giving up
#: on the rest (counted in the report).
SELECTION_ROUNDS = 20


#: Which density samples of the validation must pass the flux-in-stamp cut of the real galaxies:
#: ``"pairs"``, those whose paired real galaxy's own COSMOS postage stamp is larger than the
#: stamp (``original_size``), or ``"all"``. A real galaxy's flux fraction is measured against the
#: sum of its postage stamp, so one no larger than the 64-pixel stamp passes the cut whatever its
#: wings (the postage stamps of 90-100% of the real galaxies fainter than F814W 24 are), while a
#: generated galaxy's is measured against its whole model flux. The report counts the first
#: draws that fail the cut, applied or not.
SAMPLE_FLUX_CUT = "pairs"


def _passing(noisy_imgs, clean_imgs, flux, cuts):
    """Which noisy sample stamps pass the real dataset's quality cuts, measured as the dataset
    measures real stamps (:func:`stamp_metrics`; the flux fraction from the noiseless stamp)."""
    rows = [stamp_metrics(a) for a in noisy_imgs]
    table = {k: np.array([r[k] for r in rows]) for k in ("snr", "width_pix", "nonuniformity")}
    table["flux_fraction"] = clean_imgs.sum(axis=(1, 2)) / np.asarray(flux, dtype=float)
    return cuts.passes(table), table


def _selected_samples(m, pair, sig, flux, cuts, flux_cut, decode, noisy, rng, first_pop):
    """Density samples at the magnitudes of the real galaxies ``pair`` (the first draws
    ``first_pop``), each redrawn (at most :data:`SELECTION_ROUNDS` times) until its noisy stamp
    passes the cuts the real galaxies passed and the sampling guard of :meth:`VAEGalaxy.sample`
    lets it through (border sky within :data:`MAX_BORDER_SKY` and negative light within
    :data:`MAX_NEGATIVE_LIGHT` of its flux; here a refused one is redrawn at its magnitude with
    the others, where ``sample`` first redraws its latent at its pixel scale and flux). The
    flux-in-stamp cut applies to the samples of the real galaxies where ``flux_cut`` (one
    boolean per real galaxy) is True.

    ``decode(latents, pair_indices, pixel_scales)`` gives the drawn stamps, which latents could
    be drawn and which drawn ones the guard lets through; ``noisy(stamps, pair_indices)`` adds
    the paired real stamps' noise.

    Returns the first draws (noisy stamps and noise sigmas, cuts and guard aside), the selected
    ones, and a summary of the selection."""
    n = len(pair)
    out = [None] * n
    tried = np.zeros(n, dtype=int)
    first = summary = None
    for k in range(SELECTION_ROUNDS):
        todo = np.array([j for j in range(n) if out[j] is None], dtype=int)
        if not todo.size:
            break
        tried[todo] += 1
        if k == 0:
            pop = first_pop
        else:
            with warnings.catch_warnings():  # a real galaxy fainter than any training stamp
                warnings.filterwarnings("ignore", "log10_flux values lie outside", GalSimWarning)
                pop = m.sample_population(
                    len(todo), rng, sampling="density", magnitude=magnitudes(flux[pair[todo]])
                )
        imgs, ok, guarded = decode(pop["latent"], pair[todo], pop["pixel_scale"])
        drawn = todo[ok]
        noisy_imgs = noisy(imgs, pair[drawn])
        loose = dataclasses.replace(cuts, min_flux_fraction=0.0)
        passed, measured = _passing(noisy_imgs, imgs, flux[pair[drawn]], loose)
        low = measured["flux_fraction"] < cuts.min_flux_fraction
        passed &= ~(low & flux_cut[pair[drawn]])
        good = passed & guarded
        if k == 0:  # the first draws, and how they fared cut by cut
            first = (noisy_imgs, sig[pair[drawn]])
            mag = magnitudes(flux[pair])
            summary = {
                "n": n,
                "undrawable": int(n - len(drawn)),
                "passing": float(good.sum() / n),
                "redrawn_by_guard": int((~guarded).sum()),
                "below_min_snr": int((measured["snr"] < cuts.min_snr).sum()),
                "width_out_of_range": int(
                    (
                        (measured["width_pix"] < cuts.min_width)
                        | (measured["width_pix"] > cuts.max_width)
                    ).sum()
                ),
                "below_min_nonuniformity": int(
                    (measured["nonuniformity"] < cuts.min_nonuniformity).sum()
                ),
                "below_min_flux_fraction": int(low.sum()),
                "below_min_flux_fraction_cut": int((low & flux_cut[pair[drawn]]).sum()),
            }
        for j, a in zip(drawn[good], noisy_imgs[good]):
            out[j] = a
    keep = np.array([j for j in range(n) if out[j] is not None], dtype=int)
    size = first[0].shape[-1]
    imgs = np.array([out[j] for j in keep]).reshape(-1, size, size)
    # Pairs that never passed are dropped: the faintest, mostly; the magnitudes say by how much.
    filled_mag = float(np.median(mag[keep])) if keep.size else None
    return (
        first,
        (imgs, sig[pair[keep]]),
        {
            "rounds": SELECTION_ROUNDS,
            "fraction_passing_first_draw": summary["passing"],
            "first_draw": summary,
            "n_filled": int(keep.size),
            "n_unfilled": int(n - keep.size),
            "median_draws": float(np.median(tried)),
            "median_magnitude_paired": float(np.nanmedian(mag)),
            "median_magnitude_filled": filled_mag,
        },
    )


def _markdown(res):
    pops = list(res["wasserstein_to_real"])
    lines = [
        "# Validation: generated galaxies against real ones",
        "",
        f"Real galaxies: {res['n_real']} held-out stamps of `{Path(res['real_dataset']).name}` "
        f"that pass the cuts; model `{Path(res['model']).name}`; {res['n_samples']} galaxies "
        "per sampled population. Written by `galsim-vae validate`.",
        "",
        "Wasserstein distance to the real distribution (smaller is closer):",
        "",
        "| statistic | " + " | ".join(pops) + " | sampling floor |",
        "|---|" + "---|" * (len(pops) + 1),
    ]
    floor = res.get("wasserstein_sampling_floor", {})
    below = [
        k for k in STATISTICS if k in floor and res["wasserstein_to_real"]["sersic"][k] < floor[k]
    ]
    for k in STATISTICS:
        lines.append(
            f"| {k} | "
            + " | ".join(f"{res['wasserstein_to_real'][p][k]:.4g}" for p in pops)
            + f" | {floor.get(k, float('nan')):.4g} |"
        )
    lines += [
        "",
        "Statistics on which each VAE population is closer to the real galaxies than "
        f"the best-fit Sersic profiles (of {res['n_statistics']}):",
        "",
    ]
    for p, w in res["statistics_closer_than_sersic"].items():
        lines.append(f"- {p}: {w}")
    sel = res.get("density_selection")
    if sel:
        first = sel["first_draw"]
        real_frac = sel.get("real_fraction_passing_near_these_magnitudes")
        lines += [
            "",
            "The real galaxies are the stamps that passed the dataset's cuts (SNR, Width, "
            "NonUniformity, flux in the stamp); at faint magnitudes these keep the compact "
            "galaxies. `vae_density` samples are drawn at the magnitudes (total fluxes) of the "
            "real galaxies they are paired with and go through the same cuts"
            + (
                ""
                if sel.get("flux_cut", "all") == "all"
                else ", the flux in the stamp only where the paired real galaxy's own COSMOS "
                "postage stamp was larger than the stamp (a real galaxy's flux fraction is of its "
                "postage stamp's sum, so a smaller one passes that cut by construction; a "
                "sample's is of its whole model flux; "
                f"{sel.get('pairs_with_flux_cut', float('nan')):.0%} of the pairs)"
            )
            + ", with the same "
            "added noise, and through the sampling guard of `VAEGalaxy.sample`, each redrawn "
            f"until it passes (at most {sel['rounds']} times; {sel['n_unfilled']} of "
            f"{first['n']} never did, which moves the median paired magnitude from "
            f"{sel['median_magnitude_paired']:.2f} to "
            f"{sel['median_magnitude_filled'] or float('nan'):.2f}). "
            f"Of the first draws {sel['fraction_passing_first_draw']:.0%} passed "
            f"({first['below_min_snr']} below the SNR cut, {first['width_out_of_range']} "
            f"outside the Width range, {first['redrawn_by_guard']} redrawn by the guard, "
            f"{first['below_min_flux_fraction']} with too little flux in the stamp"
            + (
                f", {first['below_min_flux_fraction_cut']} of them where that cut applied"
                if "below_min_flux_fraction_cut" in first and sel.get("flux_cut", "all") != "all"
                else ""
            )
            + ")"
            + (
                f", where {real_frac:.0%} of the real galaxies within 0.5 mag of the same "
                "magnitudes passed"
                if real_frac is not None
                else ""
            )
            + ". `vae_density_unselected` are those first draws, cuts and guard aside.",
        ]
    lines += [
        "",
        "The sampling floor is the distance that sampling alone gives between the real galaxies "
        f"and {res['n_samples']} galaxies drawn from their own distribution (bootstrap draws of "
        "the real values): a population as close as that is as close as one can tell. The "
        "Sersic fits, each fitted to the very galaxy it is compared with, can come closer than "
        "the floor"
        + (
            f" ({', '.join(below)}): there no independent population can be expected to beat them."
            if below
            else "; here they do not."
        ),
        "",
        "![statistics](validation_statistics.png)",
        "",
        "The brightest real galaxies, their reconstructions, the brightest generated galaxies "
        "and the Sersic fits of the real ones, each with its noise:",
        "",
        "![galaxies](validation_galaxies.png)",
        "",
        (
            "The noise added to the VAE and Sersic images is COSMOS correlated noise (the real "
            "stamps' noise correlation function) at each paired real galaxy's catalog noise "
            "variance, as the simulator adds it, so every population has the real stamps' noise."
            if res.get("added_noise", "white") != "white"
            else "Caveat: the noise added to the VAE and Sersic images is white, at each real "
            "stamp's measured sigma (no COSMOS noise correlation file was found), while the "
            "real COSMOS noise is correlated; asymmetry and smoothness are the statistics most "
            "sensitive to that difference."
        ),
        "",
    ]
    if "loss_comparison" in res:
        lines += [
            "## The paper's comparison of its losses",
            "",
            "Same network and data, latent SNR (eq. 6) on the real galaxies "
            "(`scripts/compare_losses.sh`):",
            "",
            "| loss | latents with SNR > 1 | largest latent SNR | median chi2/pixel |",
            "|---|---|---|---|",
        ]
        for name, v in res["loss_comparison"].items():
            lines.append(
                f"| {name} | {v['n_latents_snr_gt_1']} | {v['max_latent_snr']:.3g} | "
                f"{v['median_chi2_per_pixel']:.3g} |"
            )
        lines.append("")
    return "\n".join(lines)


def _simulator_settings(sim_dataset):
    """``morphology=..., scale_mode=..., seed=...`` from a simulated dataset's header."""
    from astropy.io import fits

    h = fits.getheader(sim_dataset, 0)
    keys = (
        ("MORPHOL", "morphology"),
        ("FSLOPE", "faint_size_slope"),
        ("SCALEMOD", "scale_mode"),
        ("SEED", "seed"),
    )
    got = [f"{name}={h[k]}" for k, name in keys if k in h]
    if got and "MORPHOL" not in h:  # written before the structured simulator
        got.insert(0, "morphology=smooth")
    return ", ".join(got)


def _check_same_selection(real_dataset, sim_dataset):
    """Both sets drawn in one scale mode and cut alike, or the comparison is biased: a "fit" set's
    0.03"/px stamps are the galaxies whose major axis fits (round ones), a fixed set's passing
    stamps all galaxies small enough, and other cuts pass other galaxies."""
    from astropy.io import fits

    hr, hs = fits.getheader(real_dataset, 0), fits.getheader(sim_dataset, 0)
    keys = ["SCALEMOD"] + sorted(k for k in hr if k.startswith("C_"))
    diff = {k: (hr.get(k), hs.get(k)) for k in keys if hr.get(k) != hs.get(k)}
    if diff:
        raise GalSimValueError(
            "the simulated set must be drawn in the real set's scale mode with its cuts (e.g. "
            "galsim-vae simulate --scale-mode fixed with the default cuts); differences (real, "
            "simulated): " + "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items()),
            str(sim_dataset),
        )


def _cosmos_noise(seed, required=False):
    """COSMOS correlated noise (``galsim.getCOSMOSNoise`` of the real stamps' noise correlation
    function in the shared data), seeded by ``seed``; None where the file is missing, unless
    ``required``."""
    from ..pipeline.simulator import find_shared_data

    try:
        cf = find_shared_data() / "cosmos_btk100" / "acs_I_unrot_sci_20_cf.fits"
    except GalSimValueError:
        cf = None
    if cf is None or not cf.is_file():
        if required:
            raise GalSimValueError("COSMOS noise correlation file not found", str(cf))
        return None
    return galsim.getCOSMOSNoise(file_name=str(cf), rng=as_deviate(int(seed)), cosmos_scale=0.03)


def _add_noise(images, sigmas, scale, noise):
    """``images`` plus ``noise`` at each stamp's ``sigma`` (its variance ``sigma**2``)."""
    out = []
    for a, s_ in zip(images, sigmas):
        im = galsim.Image(np.array(a, dtype=float), scale=scale)
        im.addNoise(noise.withVariance(float(s_) ** 2))
        out.append(im.array)
    return np.array(out).reshape(np.shape(images))


def _cosmos_noisy(images, sigmas, scale, seed):
    """``images`` plus COSMOS correlated noise (the real stamps' noise correlation function) at
    each stamp's ``sigma``, as the simulator adds it."""
    return _add_noise(images, sigmas, scale, _cosmos_noise(seed, required=True))


def sampling_floor(values, n_a, n_b, *, n_boot=200, seed=0):
    """The Wasserstein distance that sampling alone gives between ``n_a`` and ``n_b`` draws of
    one distribution: the mean over ``n_boot`` pairs of bootstrap samples of ``values`` (NaNs
    dropped). A population drawn from the very distribution of ``values`` would show about this
    distance; a distance below it is closer than independent draws can be expected to come."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(
        np.mean(
            [
                wasserstein_distance(rng.choice(v, int(n_a)), rng.choice(v, int(n_b)))
                for _ in range(int(n_boot))
            ]
        )
    )


def compare_simulator(real_dataset, sim_dataset, out_dir, *, per_real=4, seed=0) -> dict:
    """The simulator against the real galaxies, on the statistics of :func:`validate`.

    Simulated stamps are compared with the real stamps that pass the cuts, at matched SNR and
    size. The simulated set must be drawn in the real set's scale mode and cut alike (checked):
    a ``"fit"`` set's finest-scale stamps would be the galaxies whose major axis fits, round ones.
    For each real galaxy the ``per_real`` simulated stamps nearest to it in (log SNR, log
    width), drawn without replacement among the simulated stamps that pass the cuts and share
    the real stamps' pixel scale (a simulated set in ``"fit"`` scale mode has its small galaxies
    there). Both sides are noisy stamps with COSMOS correlated noise, measured the same way
    (HSM on the stamp, statmorph with each stamp's border noise sigma). As yardsticks for the
    distances, the real galaxies are also split at random into two halves and compared with
    each other, and the best-fit PSF-convolved Sersic profile of each real galaxy, with COSMOS
    correlated noise at the galaxy's catalog noise variance (the simulator's noise treatment), is
    measured the same way: the simulator should be closer to the real galaxies than those fits.

    Writes ``simulator.json``, ``simulator.md`` and ``simulator_statistics.png`` to ``out_dir``.

    Returns:
        dict: the numbers written to ``simulator.json``.
    """
    per_real = int(per_real)
    if per_real < 1:
        raise GalSimValueError("per_real must be at least 1", per_real)
    _check_same_selection(real_dataset, sim_dataset)
    ri, rt, rpsfs, _ = read_dataset(real_dataset)
    si, st, _, _ = read_dataset(sim_dataset)
    if rpsfs is None:
        raise GalSimValueError("the real dataset has no PSFS HDU", str(real_dataset))
    for name, t in (("real", rt), ("simulated", st)):
        missing = [
            c
            for c in ("passes", "snr", "width_arcsec", "pixel_scale", "noise_sigma")
            if c not in t.colnames
        ]
        if missing:
            raise GalSimValueError(f"the {name} dataset lacks columns", missing)
    r = np.flatnonzero(np.asarray(rt["passes"], dtype=bool))
    if len(r) < 5:
        raise GalSimValueError("need at least 5 real stamps passing the cuts", len(r))
    scale = float(np.median(rt["pixel_scale"][r]))
    sp = np.asarray(st["pixel_scale"], dtype=float)
    pool = np.flatnonzero(np.asarray(st["passes"], dtype=bool) & np.isclose(sp, scale))
    if len(pool) < per_real * len(r):
        raise GalSimValueError(
            f'need {per_real * len(r)} simulated stamps passing the cuts at {scale}"/px',
            len(pool),
        )

    def features(t, rows):
        return np.column_stack(
            [
                np.log10(np.clip(np.asarray(t[c], dtype=float)[rows], 1e-6, None))
                for c in ("snr", "width_arcsec")
            ]
        )

    fr, fs = features(rt, r), features(st, pool)
    spread = fr.std(axis=0) + 1e-9
    free = np.ones(len(pool), dtype=bool)
    match = []
    for k in np.argsort(-fr[:, 0]):  # brightest first: they have the fewest close matches
        d = np.where(free, np.hypot(*((fs - fr[k]) / spread).T), np.inf)
        pick = np.argsort(d)[:per_real]
        free[pick] = False
        match.extend(pool[pick])
    match = np.array(sorted(match))
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(r))
    a, b = np.sort(half[: len(r) // 2]), np.sort(half[len(r) // 2 :])
    sig = np.asarray(rt["noise_sigma"], float)[r]
    x = ri[r].astype(float)
    fits = [
        fit_sersic_lsq(im, rpsfs[int(k)], s_, scale=scale)
        for im, k, s_ in zip(x, np.asarray(rt["psf_index"])[r], sig)
    ]
    # COSMOS noise at the catalog's variance, as the simulator adds it (the border estimate
    # of correlated noise reads low); the measured sigma where a row has no catalog variance.
    cat_sig = sig.copy()
    if "catalog_noise_variance" in rt.colnames:
        v = np.asarray(rt["catalog_noise_variance"], dtype=float)[r]
        cat_sig = np.where(np.isfinite(v) & (v > 0), np.sqrt(np.abs(v)), sig)
    sersic = _cosmos_noisy([f.model for f in fits], cat_sig, scale, seed + 1)
    stats = {
        "real": _stats(x, sig, scale),
        "simulated": _stats(
            si[match].astype(float), np.asarray(st["noise_sigma"], float)[match], scale
        ),
        "sersic": _stats(sersic, sig, scale),
    }
    dist = {k: _distance(stats["simulated"][k], stats["real"][k]) for k in STATISTICS}
    dist_sersic = {k: _distance(stats["sersic"][k], stats["real"][k]) for k in STATISTICS}
    split = {k: _distance(stats["real"][k][a], stats["real"][k][b]) for k in STATISTICS}
    closer = [k for k in STATISTICS if dist[k] < dist_sersic[k]]
    # What a simulator drawing from the real galaxies' own distribution would show at these
    # sample sizes: where the paired Sersic fits come closer than that, no independent
    # population can be expected to beat them.
    floor = {
        k: sampling_floor(
            stats["real"][k],
            np.isfinite(stats["real"][k]).sum(),
            np.isfinite(stats["simulated"][k]).sum(),
            seed=seed + 2,
        )
        for k in STATISTICS
    }
    below_floor = [k for k in STATISTICS if dist_sersic[k] < floor[k]]
    res = {
        "real_dataset": str(real_dataset),
        "sim_dataset": str(sim_dataset),
        "pixel_scale": scale,
        "n_real": int(len(r)),
        "n_simulated": int(len(match)),
        "n_simulated_pool": int(len(pool)),
        "matched_on": ["snr", "width_arcsec"],
        "median_snr": {
            "real": _median(10 ** fr[:, 0]),
            "simulated": _median(np.asarray(st["snr"], float)[match]),
        },
        "median_width_arcsec": {
            "real": _median(10 ** fr[:, 1]),
            "simulated": _median(np.asarray(st["width_arcsec"], float)[match]),
        },
        "simulator": _simulator_settings(sim_dataset),
        "wasserstein_sim_to_real": dist,
        "wasserstein_sersic_to_real": dist_sersic,
        "wasserstein_real_half_to_half": split,
        "wasserstein_sampling_floor": floor,
        "sersic_below_sampling_floor": below_floor,
        "statistics_closer_than_sersic": len(closer),
        "closer_than_sersic": closer,
        "medians": {p: {k: _median(v) for k, v in s_.items()} for p, s_ in stats.items()},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_validation(
        stats,
        out / "simulator_statistics.png",
        title="Real galaxies, simulated stamps matched in SNR and size, and Sersic fits",
    )
    write_json(out / "simulator.json", res)
    lines = [
        "# The simulator against the real galaxies",
        "",
        f"{res['n_real']} real stamps of `{Path(real_dataset).name}` that pass the cuts against "
        f"{res['n_simulated']} simulated stamps of `{Path(sim_dataset).name}` ({per_real} per "
        f"real galaxy, nearest in log SNR and log width among {res['n_simulated_pool']} at "
        f'{scale}"/px). Median SNR {res["median_snr"]["real"]:.1f} (real) and '
        f"{res['median_snr']['simulated']:.1f} (simulated); median width "
        f'{res["median_width_arcsec"]["real"]:.3f}" and '
        f'{res["median_width_arcsec"]["simulated"]:.3f}". Simulator: '
        f"{res['simulator'] or 'not recorded'}. Written by "
        "`galsim-vae validate REAL --simulated SIM`.",
        "",
        "| statistic | median real | median simulated | median Sersic | distance sim-real "
        "| distance Sersic-real | distance real-real | sampling floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in STATISTICS:
        lines.append(
            f"| {k} | {res['medians']['real'][k]:.4g} | {res['medians']['simulated'][k]:.4g} "
            f"| {res['medians']['sersic'][k]:.4g} | {dist[k]:.4g} | {dist_sersic[k]:.4g} "
            f"| {split[k]:.4g} | {floor[k]:.4g} |"
        )
    lines += [
        "",
        f"The simulated stamps are closer to the real galaxies than the best-fit Sersic profiles "
        f"of those galaxies on {len(closer)} of {len(STATISTICS)} statistics"
        f"{' (' + ', '.join(closer) + ')' if closer else ''}.",
        "",
        "Distances are Wasserstein distances between the distributions. The Sersic profiles are "
        "each real galaxy's best fit (PSF-convolved) with COSMOS correlated noise at its catalog "
        "noise variance, like the simulated stamps; they are fitted to these very galaxies, so "
        "they match sizes and ellipticities by construction, which matched simulations can only "
        "approach. "
        "The real-real column compares two random halves of the real galaxies. The sampling "
        "floor is the distance that sampling alone gives at these sample sizes: the mean "
        "distance between bootstrap draws of the real galaxies' own values, as many as real and "
        "as many as simulated stamps. A simulator drawing from the real distribution itself "
        "would show about that distance."
        + (
            f" The Sersic fits come closer than the floor on {', '.join(below_floor)}: there, "
            "being paired with the real galaxies, they cannot be beaten by any independent "
            "population except by chance."
            if below_floor
            else ""
        ),
        "",
        "![statistics](simulator_statistics.png)",
        "",
    ]
    with atomic_path(out / "simulator.md") as tmp:
        tmp.write_text("\n".join(lines))
    return res
