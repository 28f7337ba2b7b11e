"""Fitting the attribute model (``galsim-vae fit-attributes``), and the size estimator it uses.

:func:`measure_sersic` is the one estimator of half-light radius, axis ratio and orientation: it
measures the training stamps (the labels of :class:`galsim_vae.AttributeModel`) and, to check the
fitted model, the galaxies it generates. :func:`fit_attribute_model` encodes the training stamps,
fits the forward, inverse and sky models, and measures how well they work (the report).
"""

from __future__ import annotations

from pathlib import Path

import galsim
import numpy as np

from .._utils import as_deviate, load_arrays, save_arrays, write_json
from ..attributes import HUBBLE_TYPES, AttributeModel, bt_to_ttype, simulated_ttype
from ..errors import GalSimValueError
from ..galaxy import VAEGalaxy
from ..model import get_model
from ..pipeline._parallel import parallel_map
from ..pipeline.dataset import read_dataset
from ..psf import hst_f814w_psf
from ..stamp import border_pixels, normalize
from .analysis import rotate_stamps
from .plots import plot_attribute_report
from .sersic import SERSIC_MAX_HLR, fit_sersic_lsq

__all__ = ["measure_sersic", "fit_attribute_model"]


class _SersicWorker:
    """Per-process Sersic fitter for :func:`measure_sersic` (holds the PSF images)."""

    def __init__(self, stamps, psf_images, scales, fit_sky):
        self.stamps, self.psfs, self.scales, self.fit_sky = stamps, psf_images, scales, fit_sky

    def __call__(self, i):
        s = np.asarray(self.stamps[i], dtype=float)
        if not np.all(np.isfinite(s)):
            return (np.nan,) * 4
        sig = max(float(np.std(border_pixels(s))), 1e-3 * float(np.ptp(s)), 1e-12)
        psf = self.psfs[i if len(self.psfs) > 1 else 0]
        scale = float(self.scales[i if len(self.scales) > 1 else 0])
        try:
            f = fit_sersic_lsq(s, psf, sig, scale=scale, fit_sky=self.fit_sky)
        except GalSimValueError:  # no starting point (a stamp with no measurable light)
            return (np.nan,) * 4
        return f.params[1], f.params[2], f.params[3], f.params[4]


def measure_sersic(stamps, psf=None, *, scale=0.03, fit_sky=False, nproc=1, progress=False) -> dict:
    """Size, Sersic index, axis ratio and orientation of stamps, from PSF-convolved Sersic fits.

    This is the estimator that defines the attribute model's ``half_light_radius`` and
    ``axis_ratio``: the half-light radius (arcsec) and axis ratio of the best-fit Sersic profile
    convolved with ``psf`` (the model's HST PSF, :func:`galsim_vae.hst_f814w_psf`, when None), as
    in the COSMOS catalog's Sersic fits and GalSim's parametric ``COSMOSCatalog`` galaxies. The
    stamps must be sky-subtracted, as COSMOS stamps and :attr:`VAEGalaxy.stamp` are. For a
    bulge + disk galaxy this radius differs from the half-light radius of the total light, most
    for galaxies not much larger than the PSF (docs/attributes.md).

    Parameters:
        stamps: array (N, S, S) of stamps in flux units at ``scale``.
        psf: a GSObject, a PSF image at ``scale``, or an (N, P, P) array of one PSF image per
            stamp (each at its stamp's scale). [default: None, the HST F814W PSF]
        scale: pixel scale (arcsec), or one per stamp. [default: 0.03]
        fit_sky: fit a constant sky level too. On noisy stamps it is degenerate with the size
            and index of extended galaxies (the wings trade against the sky). [default: False]
        nproc: processes (None: all cores). [default: 1]
        progress: show a progress bar. [default: False]

    Returns:
        dict of arrays: ``half_light_radius``, ``sersic_n``, ``axis_ratio`` and
        ``position_angle`` (degrees, counter-clockwise from +x).
    """
    stamps = np.asarray(stamps, dtype=np.float32)
    if stamps.ndim != 3:
        raise GalSimValueError("stamps must be an (N, S, S) array", stamps.shape)
    n = len(stamps)
    scales = np.atleast_1d(np.asarray(scale, dtype=float))
    if len(scales) not in (1, n) or scales.ndim != 1 or np.any(~(scales > 0)):
        raise GalSimValueError("scale must be positive: one value or one per stamp", scale)
    psf = hst_f814w_psf() if psf is None else psf
    if isinstance(psf, galsim.GSObject):  # an image is much cheaper to convolve with
        psfs = np.array(
            [
                psf.drawImage(
                    nx=48, ny=48, scale=sc, method="no_pixel", use_true_center=False
                ).array
                for sc in np.unique(scales)
            ]
        )
        psfs = psfs[np.searchsorted(np.unique(scales), scales)] if len(scales) > 1 else psfs
    else:
        psfs = np.asarray(psf, dtype=float)
        psfs = psfs[None] if psfs.ndim == 2 else psfs
        if psfs.ndim != 3 or len(psfs) not in (1, n):
            raise GalSimValueError("psf must be one image or one per stamp", np.shape(psf))
    res = np.array(
        parallel_map(
            _SersicWorker,
            (stamps, psfs, scales, bool(fit_sky)),
            range(len(stamps)),
            nproc=nproc,
            chunk=32,
            desc="Sersic fits",
            progress=progress,
        ),
        dtype=float,
    ).reshape(-1, 4)
    g = np.hypot(res[:, 2], res[:, 3])
    return {
        "half_light_radius": res[:, 0],
        "sersic_n": res[:, 1],
        "axis_ratio": (1 - g) / (1 + g),
        "position_angle": np.degrees(0.5 * np.arctan2(res[:, 3], res[:, 2])) % 180,
    }


def _ttype_of(table, max_knot_fraction):
    """T-type of simulated rows (:func:`simulated_ttype`)."""
    bt = np.asarray(table["bulge_fraction"], dtype=float)
    if "knot_fraction" not in table.colnames or not max_knot_fraction > 0:
        return bt_to_ttype(bt)  # no knots: B/T is all there is
    return simulated_ttype(bt, table["knot_fraction"], max_knot_fraction)


def _measure_resumable(x, ident, path, *, block=1000, **kwargs):
    """:func:`measure_sersic` in blocks, saved to ``path`` after each; resumes from ``path``."""
    done = {}
    if path is not None and path.is_file():
        d, _ = load_arrays(path, "Sersic measurements", ("index",))
        n = len(d["index"])
        if n <= len(ident) and np.array_equal(d["index"], ident[:n]):
            done = {k: v for k, v in d.items() if k != "index"}
    start = len(done.get("half_light_radius", ()))
    scale = np.broadcast_to(np.asarray(kwargs.pop("scale", 0.03), dtype=float), (len(x),))
    for i in range(start, len(x), block):
        part = measure_sersic(x[i : i + block], scale=scale[i : i + block], **kwargs)
        done = {k: np.concatenate([done[k], v]) if done else v for k, v in part.items()}
        if path is not None:
            save_arrays(path, {"index": ident[: i + len(part["sersic_n"])], **done}, {})
    return done


def _load_measurements(path, index):
    d, _ = load_arrays(path, "Sersic measurements", ("index",))
    if not np.array_equal(d["index"], np.asarray(index).astype(str)):
        raise GalSimValueError(
            "measurements file is for other dataset rows (refit without it)", str(path)
        )
    return {k: v for k, v in d.items() if k != "index"}


def _is_monotonic(values, tol=0.0):
    v = np.asarray(values, dtype=float)
    return bool(np.all(np.diff(v) <= tol))


def fit_attribute_model(
    dataset,
    model=None,
    *,
    max_rows=10000,
    n_per=48,
    k=64,
    seed=0,
    real_dataset=None,
    report_dir=None,
    measurements=None,
    nproc=None,
    progress=False,
):
    """Fit the attribute models on a simulated dataset, and measure how well they work.

    Attributes of the training stamps: the T-type from the simulation's true bulge-to-total
    ratio and knot fraction (:func:`simulated_ttype`); half-light radius, axis ratio and
    orientation measured on the stamp with :func:`measure_sersic` (the same estimator the checks
    below apply to generated galaxies).

    Checks (the report): the inverse model on the held-out rows (and on ``real_dataset``, against
    the same Sersic measurement); the forward model by measuring generated galaxies: at sizes
    from the 2nd to the 98th percentile of the training sizes (types and axis ratios of training
    galaxies of about that size), and for each Hubble type at the size where early and late types
    overlap most. Generated galaxies are measured on their :attr:`VAEGalaxy.stamp`.

    The Sersic fits of the training stamps are most of the cost (0.2-0.4 s each per core):
    with ``report_dir`` they are saved there (``measurements.npz``) every 1,000 stamps, and a
    rerun with the same ``report_dir`` goes on from where an interrupted one stopped;
    ``measurements=`` reuses such a file from elsewhere (same dataset rows).

    ``k`` is the forward model's number of neighbours (:meth:`AttributeModel.fit`); ``n_per``
    the number of galaxies generated per checked request.

    Returns:
        tuple: ``(AttributeModel, report dict)``.
    """
    m = get_model(model)
    flux_model = m.representation == "flux"
    images, table, _, _ = read_dataset(dataset)
    if "bulge_fraction" not in table.colnames:
        raise GalSimValueError(
            "fit-attributes needs a simulated dataset (a bulge_fraction column)", str(dataset)
        )
    sel = np.flatnonzero(np.asarray(table["passes"], dtype=bool))[:max_rows]
    x = images[sel]
    if flux_model:  # each stamp at its own scale (the stamps of a "fit" scale-mode set)
        if "pixel_scale" not in table.colnames:
            raise GalSimValueError("the dataset has no pixel_scale column", str(dataset))
        scale = np.asarray(table["pixel_scale"], dtype=float)[sel]
    else:
        scale = np.full(len(sel), m.pixel_scale)
    # The simulator's max_knot_fraction is not stored with the dataset; the largest knot
    # fraction among its rows stands for it.
    kmax = float(np.max(table["knot_fraction"])) if "knot_fraction" in table.colnames else 0.0
    t = _ttype_of(table[sel], kmax)
    ident = np.asarray(table["ident"][sel]).astype(str)
    if measurements:
        meas = _load_measurements(measurements, ident)
    else:
        save = None
        if report_dir is not None:
            Path(report_dir).mkdir(parents=True, exist_ok=True)
            save = Path(report_dir) / "measurements.npz"
        meas = _measure_resumable(x, ident, save, scale=scale, nproc=nproc, progress=progress)
    hlr, q = meas["half_light_radius"], meas["axis_ratio"]
    xc = np.array([rotate_stamps(a[None], -b)[0] for a, b in zip(x, meas["position_angle"])])
    tr = np.asarray(table["split"])[sel] == "train"
    meta = {
        "dataset": Path(dataset).name,
        "model_sha256": m.metadata["sha256"],
        "n_rows": int(tr.sum()),
        "size_estimator": "measure_sersic (PSF-convolved Sersic fit, hst_f814w_psf)",
    }
    if flux_model:
        xn, const = m.normalize(x)
        z, _ = m.encode_normalized(xn)
        zc, _ = m.encode_normalized(m.normalize(xc)[0])
        flux = const["flux"]
        tr &= flux > 0  # a stamp's flux is what its galaxies get
        meta["n_rows"] = int(tr.sum())
        # Sizes from 10% below the smallest training galaxies (0.5th percentile: a latent
        # shift at the finest scale) to twice the largest (99th: stretched scales), but no larger
        # than the Sersic estimator measures (its bound; at that bound its check can only say
        # "at least").
        lo = 0.9 * np.percentile(hlr[tr], 0.5)
        hi = min(2 * np.percentile(hlr[tr], 99), SERSIC_MAX_HLR)
        kind = dict(pixel_scale=scale[tr], flux=flux[tr], hlr_range=(lo, hi))
    else:
        xn, lo_u, hi_u = normalize(x)
        z, _ = m.encode_normalized(xn)
        xcn, lo_c, hi_c = normalize(xc)
        zc, _ = m.encode_normalized(xcn)
        kind = dict(sky=(-lo_c / (hi_c - lo_c))[tr], inverse_sky=(-lo_u / (hi_u - lo_u))[tr])
    am = AttributeModel.fit(
        zc[tr], t[tr], hlr[tr], q[tr], k=k, inverse_latents=z[tr], meta=meta, **kind
    )
    rep = {"n_train": int(tr.sum())}
    ho = np.asarray(table["split"])[sel] != "train"
    est = am.estimate(z[ho], scale[ho] if flux_model else None)
    ratio = est["half_light_radius"] / hlr[ho]
    rep["inverse_heldout_n"] = int(ho.sum())
    rep["inverse_hlr_bias"] = float(np.median(ratio) - 1)
    rep["inverse_hlr_scatter"] = float(np.std(np.log(ratio)))
    rep["inverse_ttype_rms"] = float(np.sqrt(np.mean((est["hubble_type"] - t[ho]) ** 2)))
    rep["inverse_q_rms"] = float(np.sqrt(np.mean((est["axis_ratio"] - q[ho]) ** 2)))

    rng = as_deviate(int(seed))
    ud = galsim.UniformDeviate(rng)
    ht, tt, qt = hlr[tr], t[tr], q[tr]

    def measured(tq, hq, qq):
        # The galaxies as users get them (as from_attributes makes them): VAEGalaxy stamps.
        if flux_model:
            pop = am.sample_population(tq, hq, qq, rng)
            gals = VAEGalaxy.from_latents(
                pop["latent"], m, pixel_scale=pop["pixel_scale"], flux=pop["flux"]
            )
            sc = pop["pixel_scale"]
        else:
            zz = am.sample(tq, hq, qq, rng)
            lo, hi = m.sky_free_constants(zz)
            gals = VAEGalaxy.from_latents(zz, m, norm_min=lo, norm_max=hi)
            sc = m.pixel_scale
        # A galaxy that cannot be drawn (a flux model's latent decoding to no positive flux) is
        # counted, and measured as NaN.
        ok = np.ones(len(gals), dtype=bool)
        stamps = []
        for i, g in enumerate(gals):
            try:
                stamps.append(g.stamp.array)
            except GalSimValueError:
                ok[i] = False
        failed[0] += int((~ok).sum())
        res = {}
        if ok.any():
            sc_ok = np.broadcast_to(np.asarray(sc, dtype=float), (len(gals),))[ok]
            res = measure_sersic(np.array(stamps), scale=sc_ok, nproc=nproc)
        out = {}
        for k in ("half_light_radius", "sersic_n", "axis_ratio", "position_angle"):
            out[k] = np.full(len(gals), np.nan)
            if ok.any():
                out[k][ok] = res[k]
        return out

    failed = [0]

    # Sizes: each request takes the type and axis ratio of a training galaxy of about that size.
    sizes = np.geomspace(*np.percentile(ht, [2, 98]), 6)
    if flux_model:  # and the ends of the accepted range, beyond the training sizes
        sizes = np.concatenate([[am.a["hlr_range"][0]], sizes, [am.a["hlr_range"][1]]])
    med, spread = [], []
    for h in sizes:
        near = np.flatnonzero(np.abs(np.log(ht / h)) < 0.1)
        if len(near) == 0:
            near = np.argsort(np.abs(np.log(ht / h)))[:5]
        pick = near[(np.array([ud() for _ in range(n_per)]) * len(near)).astype(int)]
        got = measured(tt[pick], np.full(n_per, h), qt[pick])["half_light_radius"]
        med.append(float(np.nanmedian(got)))
        spread.append(np.nanpercentile(got, [16, 84]).tolist())
    rep["size_requested"] = sizes.tolist()
    rep["size_requested_percentile"] = [float(np.mean(ht <= h) * 100) for h in sizes]
    rep["size_measured_median"] = med
    rep["size_measured_16_84"] = spread
    rep["size_max_rel_error"] = float(np.max(np.abs(np.array(med) / sizes - 1)))

    # Types, at the size where early and late types overlap most in the training set (the
    # geometric mean of the median sizes of E and Irr galaxies); the training stamps' own
    # Sersic n there as reference.
    types = list(HUBBLE_TYPES)
    h_e, h_irr = (
        np.median(ht[np.abs(tt - HUBBLE_TYPES[c]) <= 1.5])
        if np.any(np.abs(tt - HUBBLE_TYPES[c]) <= 1.5)
        else np.median(ht)
        for c in ("E", "Irr")
    )
    h_type = float(np.sqrt(h_e * h_irr))
    ns, ns_err, ns_train = [], [], []
    boot = np.random.default_rng(seed)
    for name in types:
        tv = HUBBLE_TYPES[name]
        # Axis ratios of training galaxies of this type and about this size (they differ by type,
        # and one repeated request would draw on one set of neighbours only).
        near = (np.abs(tt - tv) <= 1.5) & (np.abs(np.log(ht / h_type)) < 0.2)
        pool = qt[near] if near.any() else qt
        qq = pool[(np.array([ud() for _ in range(n_per)]) * len(pool)).astype(int)]
        n_got = measured(np.full(n_per, tv), np.full(n_per, h_type), qq)["sersic_n"]
        n_got = n_got[np.isfinite(n_got)]
        ns.append(float(np.median(n_got)))
        # Bootstrap error of the median, to judge the steps between types.
        ns_err.append(
            float(np.std([np.median(boot.choice(n_got, len(n_got))) for _ in range(200)]))
        )
        ns_train.append(float(np.median(meas["sersic_n"][tr][near])) if near.any() else None)
    rep["types"] = types
    rep["type_test_hlr"] = h_type
    rep["sersic_n_by_type"] = ns
    rep["sersic_n_by_type_error"] = ns_err
    rep["sersic_n_by_type_training"] = ns_train
    rep["sersic_n_monotonic"] = _is_monotonic(ns)
    rep["n_generated"] = int(n_per * (len(sizes) + len(types)))
    rep["n_undrawable"] = failed[0]  # galaxies whose decoded stamp had no positive flux
    # Each step from one type to the next later one, in units of its bootstrap error.
    rep["sersic_n_step_sigma"] = (
        (np.array(ns[:-1]) - ns[1:]) / np.hypot(ns_err[:-1], ns_err[1:])
    ).tolist()

    if real_dataset is not None:
        ri, rt, _, _ = read_dataset(real_dataset)
        rs = np.flatnonzero(np.asarray(rt["passes"], dtype=bool))
        rscale = np.asarray(rt["pixel_scale"], dtype=float)[rs] if flux_model else m.pixel_scale
        zr, _ = m.encode_normalized(m.normalize(ri[rs])[0])
        er = am.estimate(zr, rscale if flux_model else None)["half_light_radius"]
        fr = measure_sersic(ri[rs], scale=rscale, nproc=nproc)["half_light_radius"]
        r = er / fr
        rep["real_n"] = int(len(rs))
        rep["real_hlr_bias"] = float(np.median(r) - 1)
        rep["real_hlr_scatter"] = float(np.std(np.log(r)))
    if report_dir is not None:
        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        plot_attribute_report(rep, d / "attributes.png")
        write_json(d / "attributes.json", rep)
    return am, rep
