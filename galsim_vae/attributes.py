"""Attributes <-> latents: galaxies by Hubble type and size (the paper's section 8 idea).

Attributes: Hubble type (class name or numeric T-type), half-light radius (arcsec) and axis
ratio; position angle and flux are applied afterwards as GalSim transformations (the model is
fitted on stamps turned so that the galaxy's major axis lies along x).

Hubble type is not a column of the COSMOS data: it is derived from the bulge-to-total flux ratio
with the mean relation of Simien & de Vaucouleurs (1986, ApJ 302, 564),
``Delta m = -2.5 log10(B/T) = 0.324 x - 0.054 x^2 + 0.0047 x^3`` with ``x = T + 5``, which is
monotonic over ``-5 <= T <= 10``. It is a mean relation: at fixed B/T real galaxies spread over
several T-types, so the T-types here are a smooth proxy for bulge dominance, not visual classes.
Class names map to E = -5, S0 = -2, Sa = 1, Sb = 3, Sc = 5, Sd = 7, Irr = 10. Past Sd the bulge
no longer tells types apart, and simulated galaxies get their T-type from how clumpy their disk
is (:func:`simulated_ttype`).

Half-light radius and axis ratio are those of the best-fit PSF-convolved Sersic profile
(:func:`measure_sersic`), measured on the training stamps and, to check the models, on the
generated ones: one estimator for both, so a requested size means the size the galaxy will be
measured to have. T-types come from the simulation's true bulge-to-total ratio and knot
fraction.

Two models over training pairs of (attributes, latent), stored as plain arrays (npz + JSON, no
pickle):

- forward, :meth:`AttributeModel.sample`: attributes -> the latent of one of the training galaxies
  nearest to the request, moved to the requested attributes by a perceptron (attributes -> mean
  latent) and jittered, so one request gives many plausible galaxies;
- inverse, :meth:`AttributeModel.estimate`: latents -> (T, hlr, q), a scikit-learn
  ``MLPRegressor`` whose weights are stored as arrays and evaluated with numpy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from galsim.errors import galsim_warn

from ._io import atomic_path
from .errors import GalSimIncompatibleValuesError, GalSimRangeError, GalSimValueError

__all__ = [
    "HUBBLE_TYPES",
    "ttype",
    "bt_to_ttype",
    "ttype_to_bt",
    "simulated_ttype",
    "AttributeModel",
    "attributes_path",
    "measure_sersic",
    "fit_attribute_model",
]

HUBBLE_TYPES = {"E": -5.0, "S0": -2.0, "Sa": 1.0, "Sb": 3.0, "Sc": 5.0, "Sd": 7.0, "Irr": 10.0}
_C = (0.324, -0.054, 0.0047)
# The support of the training attributes is measured at the 16th neighbour, whatever k is.
_SUPPORT_K = 16


def ttype(hubble_type) -> float:
    """Numeric T-type of a class name (``"Sb"``) or a number in [-5, 10]."""
    if isinstance(hubble_type, str):
        key = {k.lower(): k for k in HUBBLE_TYPES}.get(hubble_type.strip().lower())
        if key is None:
            raise GalSimValueError("Unknown Hubble type", hubble_type, tuple(HUBBLE_TYPES))
        return HUBBLE_TYPES[key]
    t = float(hubble_type)
    if not -5 <= t <= 10:
        raise GalSimRangeError("T-type must be in [-5, 10]", t, -5, 10)
    return t


def ttype_to_bt(t):
    """Bulge-to-total flux ratio of T-type ``t`` (Simien & de Vaucouleurs 1986)."""
    x = np.asarray(t, dtype=float) + 5
    dm = _C[0] * x + _C[1] * x**2 + _C[2] * x**3
    return 10 ** (-0.4 * dm)


def bt_to_ttype(bt):
    """T-type of a bulge-to-total ratio (inverse of :func:`ttype_to_bt`, clipped to [-5, 10])."""
    bt = np.clip(np.asarray(bt, dtype=float), 1e-4, 1.0)
    grid = np.linspace(-5, 10, 3001)
    dm_grid = -2.5 * np.log10(ttype_to_bt(grid))
    return np.interp(-2.5 * np.log10(bt), dm_grid, grid)


def simulated_ttype(bulge_fraction, knot_fraction, max_knot_fraction):
    """T-type of a simulated bulge + disk + knots galaxy.

    Down to Sd (B/T >= 0.020) the T-type is that of the bulge-to-total ratio
    (:func:`bt_to_ttype`). Below, the bulge no longer tells late spirals from irregulars: the
    relation puts T = 7 to 10 between B/T = 0.020 and 0.0004, a bulge that changes neither the
    look nor the concentration of the galaxy. What does is how clumpy the disk is, so for these
    galaxies T rises from 7 (smooth disk) to 10 (the simulation's largest share of the disk light
    in star-forming knots): ``T = 7 + 3 knot_fraction / max_knot_fraction``.

    Parameters:
        bulge_fraction: true bulge-to-total flux ratio.
        knot_fraction: share of the disk light in knots (``galsim.RandomKnots``).
        max_knot_fraction: the simulation's largest knot fraction.
    """
    bt = np.asarray(bulge_fraction, dtype=float)
    kf = np.asarray(knot_fraction, dtype=float)
    if not max_knot_fraction > 0:
        raise GalSimRangeError("max_knot_fraction must be positive", max_knot_fraction, 0)
    late = HUBBLE_TYPES["Sd"] + (10 - HUBBLE_TYPES["Sd"]) * np.clip(kf / max_knot_fraction, 0, 1)
    return np.where(bt >= ttype_to_bt(HUBBLE_TYPES["Sd"]), bt_to_ttype(bt), late)


def attributes_path(model_file) -> Path:
    """Where a model's attribute models live: ``<stem>_attributes.npz`` beside it."""
    p = Path(model_file)
    return p.with_name(p.name.replace(".safetensors", "") + "_attributes.npz")


class AttributeModel:
    """Forward (attributes -> latents) and inverse (latents -> attributes) models.

    Both are built on training pairs of (attributes, latent) and stored as plain arrays:

    - forward, :meth:`sample`: the ``k`` training galaxies nearest to the request in scaled
      attribute space (T, log10 hlr, q, each divided by its spread; the size and type axes are
      weighted ``size_weight`` and ``type_weight`` times more, so that neighbours match the
      requested size and type closely and differ in axis ratio first). One of them is picked at
      random; its latent (of the stamp turned so that its major axis lies along x) is moved by a
      regressor's change of mean latent between the neighbour's attributes and the requested
      ones (a perceptron from attributes to latents, :meth:`mean`), then jittered by ``jitter``
      times the neighbours' latent spread: a conditional distribution of latents of galaxies
      that look like the request, with no bias at the edges of the training distribution where
      all neighbours lie on one side. A request far outside the training attributes (an
      elliptical larger than any in the training set, say) gets a ``GalSimWarning``: its
      galaxies are extrapolated from the nearest training galaxies and may not be what was asked
      for. :meth:`sample_with_norm` adds normalisation constants that put each latent's decoded
      sky (:meth:`decoded_sky`, a third perceptron) at zero;
    - inverse, :meth:`estimate`: a multi-layer perceptron (scikit-learn ``MLPRegressor``, two
      hidden layers of 128 ReLU units) from the standardised latents of the stamps as they are
      (any orientation) to the standardised (T, log10 hlr, q). On held-out simulated stamps its
      size scatter is half that of the mean of the 16 nearest training latents.

    Nothing is pickled: the neighbour search (scikit-learn ``NearestNeighbors``) is rebuilt from
    the arrays on load, and the perceptron's weights are stored as arrays and applied with numpy.
    """

    def __init__(self, arrays: dict, meta: dict):
        self.a = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
        self.meta = dict(meta)
        self.k = int(self.meta.get("k", 16))
        self.jitter = float(self.meta.get("jitter", 0.25))
        self._nn = None

    @classmethod
    def fit(
        cls,
        latents,
        t,
        hlr,
        q,
        *,
        inverse_latents=None,
        sky=None,
        inverse_sky=None,
        k=64,
        jitter=0.25,
        size_weight=2.0,
        type_weight=2.0,
        hidden=(128, 128),
        meta=None,
    ) -> AttributeModel:
        """Build the models from training pairs.

        Parameters:
            latents: latents of the training stamps turned to canonical orientation (forward).
            t, hlr, q: T-type, half-light radius (arcsec) and axis ratio of each.
            inverse_latents: latents of the same stamps as they are (inverse); ``latents`` when
                None. [default: None]
            sky: normalised sky level of each training stamp (``-norm_min / (norm_max -
                norm_min)``), for :meth:`decoded_sky`. [default: None]
            inverse_sky: the same for the stamps as they are (``inverse_latents``); the sky
                predictor is then fitted on both, so that it serves latents of any orientation
                (as :meth:`VAEModel.sample_latents` draws them). [default: None]
            k: neighbours. [default: 64]
            jitter: latent jitter, in units of the neighbours' latent spread. [default: 0.25]
            size_weight: weight of the size axis in the forward search. [default: 2]
            type_weight: weight of the T-type axis in the forward search. [default: 2]
            hidden: hidden layer sizes of the two perceptrons. [default: (128, 128)]
            meta: extra metadata to store. [default: None]
        """
        import sklearn
        from sklearn.neighbors import NearestNeighbors

        z = np.asarray(latents, dtype=float)
        zi = z if inverse_latents is None else np.asarray(inverse_latents, dtype=float)
        if zi.shape != z.shape:
            raise GalSimIncompatibleValuesError(
                "latents and inverse_latents must have the same shape",
                latents=z.shape,
                inverse_latents=zi.shape,
            )
        hlr = np.asarray(hlr, dtype=float)
        attrs = np.stack([np.asarray(t, float), np.log10(hlr), np.asarray(q, float)], axis=1)
        if len(attrs) != len(z) or len(z) <= k:
            raise GalSimValueError(f"need more than k={k} training pairs of equal length", len(z))
        metric = 1.0 / attrs.std(axis=0)
        metric[0] *= type_weight
        metric[1] *= size_weight
        # Support: how far the 16th (or k-th, if fewer) neighbour of a training galaxy is.
        ks = min(_SUPPORT_K, k)
        dist, _ = NearestNeighbors(n_neighbors=ks + 1).fit(attrs * metric).kneighbors()
        inverse, n_inv = _fit_mlp(zi, attrs, hidden, "inv_")
        forward, n_fwd = _fit_mlp(attrs, z, hidden, "fwd_")
        if sky is not None:
            zs, ys = z, np.asarray(sky, dtype=float)
            if inverse_sky is not None:
                zs = np.concatenate([z, zi])
                ys = np.concatenate([ys, np.asarray(inverse_sky, dtype=float)])
            sky_arrays, _ = _fit_mlp(zs, ys.reshape(-1, 1), hidden, "sky_")
            forward.update(sky_arrays)
        arrays = {
            "latents": z,
            **inverse,
            **forward,
            "attrs": attrs,
            "metric": metric,
            "support_radius": np.percentile(dist[:, -1], 99),
            "hlr_range": np.percentile(hlr, [1, 99]),
            "q_range": np.percentile(q, [1, 99]),
            "q_median": np.median(q),
        }
        m = {
            "sklearn_version": sklearn.__version__,
            "n_fit": int(len(z)),
            "k": int(k),
            "jitter": float(jitter),
            "size_weight": float(size_weight),
            "type_weight": float(type_weight),
            "support_k": int(ks),
            "hidden": [int(h) for h in hidden],
            "inverse_iterations": int(n_inv),
            "forward_iterations": int(n_fwd),
            **(meta or {}),
        }
        return cls(arrays, m)

    def save(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                meta=np.array(json.dumps(self.meta, default=str)),
                **{k: v.astype(np.float32) for k, v in self.a.items()},
            )
        return path

    @classmethod
    def load(cls, path) -> AttributeModel:
        p = Path(path)
        if not p.is_file():
            raise GalSimValueError("Attribute model file not found", str(p))
        try:
            with np.load(p, allow_pickle=False) as d:
                arrays = {k: d[k] for k in d.files if k != "meta"}
                meta = json.loads(str(d["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise GalSimValueError(f"Not an attribute model file ({e})", str(p)) from e
        missing = {"latents", "attrs", "metric", "support_radius", "inv_W0", "fwd_W0"} - set(arrays)
        if missing:
            raise GalSimValueError(
                f"Attribute model file lacks {sorted(missing)}: refit it with "
                "galsim-vae fit-attributes",
                str(p),
            )
        return cls(arrays, meta)

    def _search(self):
        """The forward neighbour search, built on first use."""
        from sklearn.neighbors import NearestNeighbors

        if self._nn is None:
            x = self.a["attrs"] * self.a["metric"]
            self._nn = NearestNeighbors(n_neighbors=self.k).fit(x)
        return self._nn

    def check(self, half_light_radius, axis_ratio):
        """Raise ``GalSimRangeError`` for sizes outside the training range or bad axis ratios."""
        lo, hi = self.a["hlr_range"]
        h = np.atleast_1d(np.asarray(half_light_radius, dtype=float))
        if np.any(~np.isfinite(h)) or np.any(h < lo) or np.any(h > hi):
            raise GalSimRangeError(
                "half_light_radius outside the range the model was trained on (arcsec)",
                half_light_radius,
                float(lo),
                float(hi),
            )
        qa = np.atleast_1d(np.asarray(axis_ratio, dtype=float))
        if np.any(~np.isfinite(qa)) or np.any(qa <= 0) or np.any(qa > 1):
            raise GalSimRangeError("axis_ratio must be in (0, 1]", axis_ratio, 0, 1)

    @staticmethod
    def _request(t, hlr, q):
        shape = np.broadcast_shapes(*(np.shape(np.atleast_1d(v)) for v in (t, hlr, q)))
        return np.stack(
            [np.broadcast_to(np.asarray(v, dtype=float), shape) for v in (t, np.log10(hlr), q)],
            axis=1,
        )

    def _neighbours(self, t, hlr, q):
        req = self._request(t, hlr, q)
        dist, idx = self._search().kneighbors(req * self.a["metric"])
        ks = int(self.meta.get("support_k", self.k))
        far = dist[:, ks - 1] > 2 * float(self.a["support_radius"])
        if np.any(far):
            i = int(np.flatnonzero(far)[0])
            near = self.a["attrs"][idx[i]]
            galsim_warn(
                f"{int(far.sum())} of {len(far)} requested attribute sets lie outside the training "
                f"galaxies' attributes, e.g. T={req[i, 0]:g}, hlr={10 ** req[i, 1]:.3g}\", "
                f"q={req[i, 2]:.2f}; their galaxies are extrapolated from the nearest training "
                "galaxies "
                f'(median T={np.median(near[:, 0]):.1f}, hlr={10 ** np.median(near[:, 1]):.3g}", '
                f"q={np.median(near[:, 2]):.2f})"
            )
        return req, idx

    def mean(self, t, hlr, q) -> np.ndarray:
        """The mean latent of each attribute set (the forward regressor)."""
        return _apply_mlp(self.a, "fwd_", self._request(t, hlr, q))

    def sample(self, t, hlr, q, rng) -> np.ndarray:
        """One latent per attribute set from the conditional distribution, with a GalSim rng."""
        import galsim

        req, nb = self._neighbours(t, hlr, q)
        ud = galsim.UniformDeviate(rng)
        u = np.empty(len(nb))
        ud.generate(u)
        pick = nb[np.arange(len(nb)), np.minimum((u * self.k).astype(int), self.k - 1)]
        z = self.a["latents"]
        # The neighbour's latent, moved by the regressor from its attributes to the request's.
        shift = _apply_mlp(self.a, "fwd_", req) - _apply_mlp(self.a, "fwd_", self.a["attrs"][pick])
        spread = z[nb].std(axis=1)
        g = np.empty(z.shape[1] * len(nb))
        galsim.GaussianDeviate(rng).generate(g)
        return z[pick] + shift + self.jitter * spread * g.reshape(len(nb), -1)

    def decoded_sky(self, latents):
        """Sky level of each latent's decoded stamp, in normalised units; None without a predictor.

        A latent with no stamp of its own (drawn from the latent density or from attributes)
        decoded with the median normalisation constants has a sky that is not zero. A perceptron
        fitted on the training stamps' normalised sky ``-norm_min / (norm_max - norm_min)``
        predicts it; in flux units it is ``norm_min + sky * (norm_max - norm_min)``.
        """
        if "sky_W0" not in self.a:
            return None
        return _apply_mlp(self.a, "sky_", np.asarray(latents, dtype=float))[:, 0]

    def sample_with_norm(self, t, hlr, q, rng, norm_min, norm_max):
        """Latents as :meth:`sample`, with normalisation constants that put their sky at zero.

        The constants ``(norm_min, norm_max)`` are shifted by each latent's
        :meth:`decoded_sky`. Subtracting the border median instead trims the outskirts of
        galaxies that reach the stamp border (docs/attributes.md).

        Returns:
            tuple: ``(latents, norm_min, norm_max)``, the constants one per latent.
        """
        z = self.sample(t, hlr, q, rng)
        lo = np.full(len(z), float(norm_min))
        hi = np.full(len(z), float(norm_max))
        sky = self.decoded_sky(z)
        if sky is None:
            return z, lo, hi
        sky = lo + sky * (hi - lo)
        return z, lo - sky, hi - sky

    def estimate(self, latents) -> dict:
        """``hubble_type`` (T), ``half_light_radius`` (arcsec) and ``axis_ratio`` of latents.

        The latents are those of stamps as they are (any orientation), as from
        :func:`galsim_vae.encode_catalog` or :meth:`VAEModel.encode`.
        """
        y = _apply_mlp(self.a, "inv_", np.asarray(latents, dtype=float))
        return {
            "hubble_type": np.clip(y[:, 0], -5, 10),
            "half_light_radius": 10 ** y[:, 1],
            "axis_ratio": np.clip(y[:, 2], 0.05, 1.0),
        }


class _SersicWorker:
    """Per-process Sersic fitter for :func:`measure_sersic` (holds the PSF image)."""

    def __init__(self, stamps, psf_image, scale, fit_sky):
        self.stamps, self.psf, self.scale, self.fit_sky = stamps, psf_image, scale, fit_sky

    def __call__(self, i):
        from .metrics import border_pixels
        from .sersic import fit_sersic_lsq

        s = np.asarray(self.stamps[i], dtype=float)
        sig = max(float(np.std(border_pixels(s))), 1e-3 * float(np.ptp(s)), 1e-12)
        f = fit_sersic_lsq(s, self.psf, sig, scale=self.scale, fit_sky=self.fit_sky)
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
        psf: a GSObject or a PSF image at ``scale``. [default: None, the HST F814W PSF]
        scale: pixel scale (arcsec). [default: 0.03]
        fit_sky: fit a constant sky level too. On noisy stamps it is degenerate with the size
            and index of extended galaxies (the wings trade against the sky). [default: False]
        nproc: processes (None: all cores). [default: 1]
        progress: show a progress bar. [default: False]

    Returns:
        dict of arrays: ``half_light_radius``, ``sersic_n``, ``axis_ratio`` and
        ``position_angle`` (degrees, counter-clockwise from +x).
    """
    import galsim

    from ._parallel import parallel_map
    from .galaxy import hst_f814w_psf

    stamps = np.asarray(stamps, dtype=np.float32)
    if stamps.ndim != 3:
        raise GalSimValueError("stamps must be an (N, S, S) array", stamps.shape)
    psf = hst_f814w_psf() if psf is None else psf
    if isinstance(psf, galsim.GSObject):  # an image is much cheaper to convolve with
        psf = psf.drawImage(
            nx=48, ny=48, scale=scale, method="no_pixel", use_true_center=False
        ).array
    res = np.array(
        parallel_map(
            _SersicWorker,
            (stamps, np.asarray(psf), float(scale), bool(fit_sky)),
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


def _fit_mlp(x, y, hidden, prefix):
    """Fit an ``MLPRegressor`` from standardised x to standardised y; its parameters as arrays.

    Returns ``(arrays, iterations)``; :func:`_apply_mlp` evaluates the arrays with numpy.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    xm, xs = x.mean(axis=0), x.std(axis=0) + 1e-8
    ym, ys = y.mean(axis=0), y.std(axis=0) + 1e-8
    mlp = MLPRegressor(
        hidden_layer_sizes=tuple(hidden),
        alpha=1e-3,
        max_iter=500,
        early_stopping=True,
        random_state=0,
    )
    with warnings.catch_warnings():  # small training sets stop on max_iter: still usable
        warnings.simplefilter("ignore", ConvergenceWarning)
        yn = (y - ym) / ys
        mlp.fit((x - xm) / xs, yn[:, 0] if yn.shape[1] == 1 else yn)
    arrays = {f"{prefix}x_mean": xm, f"{prefix}x_scale": xs, f"{prefix}y_mean": ym}
    arrays[f"{prefix}y_scale"] = ys
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        arrays[f"{prefix}W{i}"], arrays[f"{prefix}b{i}"] = w, b
    return arrays, mlp.n_iter_


def _apply_mlp(a, prefix, x):
    """Evaluate the perceptron stored under ``prefix`` in ``a`` (ReLU hidden layers)."""
    h = (np.atleast_2d(x) - a[f"{prefix}x_mean"]) / a[f"{prefix}x_scale"]
    n_layers = sum(k.startswith(f"{prefix}W") for k in a)
    for i in range(n_layers):
        h = h @ a[f"{prefix}W{i}"] + a[f"{prefix}b{i}"]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
    return h * a[f"{prefix}y_scale"] + a[f"{prefix}y_mean"]


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
        with np.load(path, allow_pickle=False) as d:
            n = len(d["index"])
            if n <= len(ident) and np.array_equal(d["index"], ident[:n]):
                done = {k: d[k] for k in d.files if k != "index"}
    start = len(done.get("half_light_radius", ()))
    for i in range(start, len(x), block):
        part = measure_sersic(x[i : i + block], **kwargs)
        done = {k: np.concatenate([done[k], v]) if done else v for k, v in part.items()}
        if path is not None:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, index=ident[: i + len(part["sersic_n"])], **done)
    return done


def _load_measurements(path, index):
    with np.load(path, allow_pickle=False) as d:
        if not np.array_equal(d["index"], np.asarray(index).astype(str)):
            raise GalSimValueError(
                "measurements file is for other dataset rows (refit without it)", str(path)
            )
        return {k: d[k] for k in d.files if k != "index"}


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
    import galsim

    from .analysis import rotate_stamps
    from .dataset import read_dataset
    from .metrics import normalize
    from .model import get_model

    m = get_model(model)
    images, table, _, _ = read_dataset(dataset)
    if "bulge_fraction" not in table.colnames:
        raise GalSimValueError(
            "fit-attributes needs a simulated dataset (a bulge_fraction column)", str(dataset)
        )
    sel = np.flatnonzero(np.asarray(table["passes"], dtype=bool))[:max_rows]
    x = images[sel]
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
        meas = _measure_resumable(
            x, ident, save, scale=m.pixel_scale, nproc=nproc, progress=progress
        )
    hlr, q = meas["half_light_radius"], meas["axis_ratio"]
    xc = np.array([rotate_stamps(a[None], -b)[0] for a, b in zip(x, meas["position_angle"])])
    xn, lo_u, hi_u = normalize(x)
    z, _ = m.encode_normalized(xn)
    xcn, lo_c, hi_c = normalize(xc)
    zc, _ = m.encode_normalized(xcn)
    tr = np.asarray(table["split"])[sel] == "train"
    am = AttributeModel.fit(
        zc[tr],
        t[tr],
        hlr[tr],
        q[tr],
        k=k,
        inverse_latents=z[tr],
        sky=(-lo_c / (hi_c - lo_c))[tr],
        inverse_sky=(-lo_u / (hi_u - lo_u))[tr],
        meta={
            "dataset": Path(dataset).name,
            "model_sha256": m.metadata["sha256"],
            "n_rows": int(tr.sum()),
            "size_estimator": "measure_sersic (PSF-convolved Sersic fit, hst_f814w_psf)",
        },
    )
    rep = {"n_train": int(tr.sum())}
    ho = ~tr
    est = am.estimate(z[ho])
    ratio = est["half_light_radius"] / hlr[ho]
    rep["inverse_heldout_n"] = int(ho.sum())
    rep["inverse_hlr_bias"] = float(np.median(ratio) - 1)
    rep["inverse_hlr_scatter"] = float(np.std(np.log(ratio)))
    rep["inverse_ttype_rms"] = float(np.sqrt(np.mean((est["hubble_type"] - t[ho]) ** 2)))
    rep["inverse_q_rms"] = float(np.sqrt(np.mean((est["axis_ratio"] - q[ho]) ** 2)))

    rng = galsim.BaseDeviate(seed)
    ud = galsim.UniformDeviate(rng)
    ht, tt, qt = hlr[tr], t[tr], q[tr]

    def measured(tq, hq, qq):
        # The galaxies as users get them (as from_attributes makes them): VAEGalaxy stamps.
        from .galaxy import VAEGalaxy

        zz, lo, hi = am.sample_with_norm(tq, hq, qq, rng, m.norm_min, m.norm_max)
        gals = VAEGalaxy.from_latents(zz, m, norm_min=lo, norm_max=hi)
        stamps = np.array([g.stamp.array for g in gals])
        return measure_sersic(stamps, scale=m.pixel_scale, nproc=nproc)

    # Sizes: each request takes the type and axis ratio of a training galaxy of about that size.
    sizes = np.geomspace(*np.percentile(ht, [2, 98]), 6)
    med, spread = [], []
    for h in sizes:
        near = np.flatnonzero(np.abs(np.log(ht / h)) < 0.1)
        if len(near) == 0:
            near = np.argsort(np.abs(np.log(ht / h)))[:5]
        pick = near[(np.array([ud() for _ in range(n_per)]) * len(near)).astype(int)]
        got = measured(tt[pick], np.full(n_per, h), qt[pick])["half_light_radius"]
        med.append(float(np.median(got)))
        spread.append(np.percentile(got, [16, 84]).tolist())
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
    # Each step from one type to the next later one, in units of its bootstrap error.
    rep["sersic_n_step_sigma"] = (
        (np.array(ns[:-1]) - ns[1:]) / np.hypot(ns_err[:-1], ns_err[1:])
    ).tolist()

    if real_dataset is not None:
        ri, rt, _, _ = read_dataset(real_dataset)
        rs = np.flatnonzero(np.asarray(rt["passes"], dtype=bool))
        zr, _ = m.encode_normalized(normalize(ri[rs])[0])
        er = am.estimate(zr)["half_light_radius"]
        fr = measure_sersic(ri[rs], scale=m.pixel_scale, nproc=nproc)["half_light_radius"]
        r = er / fr
        rep["real_n"] = int(len(rs))
        rep["real_hlr_bias"] = float(np.median(r) - 1)
        rep["real_hlr_scatter"] = float(np.std(np.log(r)))
    if report_dir is not None:
        from .plots import plot_attribute_report

        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        plot_attribute_report(rep, d / "attributes.png")
        with atomic_path(d / "attributes.json") as tmp:
            tmp.write_text(json.dumps(rep, indent=1))
    return am, rep
