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
(:func:`galsim_vae.studies.attribute_fit.measure_sersic`), measured on the training stamps and, to
check the models, on the generated ones: one estimator for both, so a requested size means the
size the galaxy will be measured to have. T-types come from the simulation's true bulge-to-total
ratio and knot fraction. This module is the model that users hold; fitting it is a job of
:mod:`galsim_vae.studies.attribute_fit` (``galsim-vae fit-attributes``).

Two models over training pairs of (attributes, latent), stored as plain arrays (npz + JSON, no
pickle):

- forward, :meth:`AttributeModel.sample`: attributes -> the latent of one of the training galaxies
  nearest to the request, moved to the requested attributes by a perceptron (attributes -> mean
  latent) and jittered, so one request gives many plausible galaxies;
- inverse, :meth:`AttributeModel.estimate`: latents -> (T, hlr, q), a scikit-learn
  ``MLPRegressor`` whose weights are stored as arrays and evaluated with numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from galsim.errors import galsim_warn

from ._utils import as_deviate, load_arrays, save_arrays
from .errors import GalSimIncompatibleValuesError, GalSimRangeError, GalSimValueError

__all__ = [
    "HUBBLE_TYPES",
    "ttype",
    "bt_to_ttype",
    "ttype_to_bt",
    "simulated_ttype",
    "AttributeModel",
    "attributes_path",
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
      for. :meth:`decoded_sky` (a third perceptron) predicts the sky a latent decodes to with the
      training set's median normalisation constants, which
      :meth:`galsim_vae.VAEModel.sky_free_constants` removes;
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
        self._size_clip = None

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
        pixel_scale=None,
        flux=None,
        hlr_range=None,
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
            pixel_scale: each training stamp's pixel scale (arcsec), for flux-representation
                models whose galaxies are drawn at their own scales: a galaxy's size is then its
                size in pixels (the latent) times its pixel scale. [default: None, one scale]
            flux: each training stamp's flux, given to the galaxies drawn from it (with
                ``pixel_scale``). [default: None]
            hlr_range: (smallest, largest) half-light radius :meth:`check` accepts. [default:
                None, the 1st to 99th percentile of ``hlr``; with ``pixel_scale`` up to twice
                the 99th]
            k: neighbours. [default: 64]
            jitter: latent jitter, in units of the neighbours' latent spread. [default: 0.25]
            size_weight: weight of the size axis in the forward search. [default: 2]
            type_weight: weight of the T-type axis in the forward search. [default: 2]
            hidden: hidden layer sizes of the two perceptrons. [default: (128, 128)]
            meta: extra metadata to store. [default: None]
        """
        import sklearn
        from sklearn.neighbors import NearestNeighbors

        if hlr_range is not None and not (
            np.shape(hlr_range) == (2,) and 0 < hlr_range[0] < hlr_range[1] < np.inf
        ):
            raise GalSimValueError("hlr_range must be (smallest, largest) > 0", hlr_range)
        if flux is not None and pixel_scale is None:
            raise GalSimIncompatibleValuesError(
                "flux is given with pixel_scale (flux-representation models)",
                flux=np.shape(flux),
                pixel_scale=pixel_scale,
            )
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
        extra = {}
        fwd_attrs, inv_in = attrs, zi
        if pixel_scale is not None:
            # Sizes in pixels for the forward regressor (what the latent describes); the scale
            # itself is an input of the inverse one.
            scale = np.broadcast_to(np.asarray(pixel_scale, dtype=float), (len(z),)).copy()
            if np.any(~(scale > 0)):
                raise GalSimValueError("pixel_scale must be positive", pixel_scale)
            fwd_attrs = attrs.copy()
            fwd_attrs[:, 1] -= np.log10(scale)
            inv_in = np.column_stack([zi, np.log10(scale)])
            extra = {"pixel_scales": scale, "attrs_pixel": fwd_attrs}
            extra["min_pixel_scale"] = np.min(scale)
            if flux is not None:
                f = np.broadcast_to(np.asarray(flux, dtype=float), (len(z),))
                if np.any(~(f > 0)):
                    raise GalSimValueError("flux must be positive", flux)
                extra["log10_fluxes"] = np.log10(f)
        inverse, n_inv = _fit_mlp(inv_in, attrs, hidden, "inv_")
        forward, n_fwd = _fit_mlp(fwd_attrs, z, hidden, "fwd_")
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
            **extra,
            "attrs": attrs,
            "metric": metric,
            "support_radius": np.percentile(dist[:, -1], 99),
            # A scale model stretches its largest galaxies' pixel scales up to twice their size.
            "hlr_range": np.percentile(hlr, [1, 99]) * ([1, 2] if pixel_scale is not None else 1)
            if hlr_range is None
            else np.asarray(hlr_range, dtype=float),
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
        """Write the arrays (float32) and metadata to ``path`` (``.npz``, no pickle)."""
        return save_arrays(path, self.a, self.meta, dtype=np.float32)

    @classmethod
    def load(cls, path) -> AttributeModel:
        """Read a file written by :meth:`save` (``allow_pickle=False``)."""
        required = ("latents", "attrs", "metric", "support_radius", "inv_W0", "fwd_W0")
        arrays, meta = load_arrays(path, "attribute model", required)
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
        find = req
        if self.scale_model:  # larger or smaller than the training galaxies: stretched scales
            find = req.copy()
            if self._size_clip is None:  # once per model, not per request
                self._size_clip = np.percentile(self.a["attrs"][:, 1], [0.5, 99.5])
            find[:, 1] = np.clip(find[:, 1], *self._size_clip)
        dist, idx = self._search().kneighbors(find * self.a["metric"])
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

    @property
    def scale_model(self) -> bool:
        """Whether galaxies get their own pixel scales (a flux-representation model's)."""
        return "pixel_scales" in self.a

    def mean(self, t, hlr, q) -> np.ndarray:
        """The mean latent of each attribute set (the forward regressor; sizes in pixels of the
        model's scale, or of each galaxy's own for a :attr:`scale_model`)."""
        return _apply_mlp(self.a, "fwd_", self._request(t, hlr, q))

    def sample(self, t, hlr, q, rng) -> np.ndarray:
        """One latent per attribute set from the conditional distribution, with a GalSim rng.

        A :attr:`scale_model`'s latents are only half of a galaxy: use
        :meth:`sample_population` for their pixel scales and fluxes.
        """
        return self.sample_population(t, hlr, q, rng)["latent"]

    def sample_population(self, t, hlr, q, rng) -> dict:
        """Latents, pixel scales and fluxes of galaxies with the requested attributes.

        One neighbour of each request in attribute space is picked at random. For a
        :attr:`scale_model` its pixel scale is stretched by the ratio of the requested size to
        its own (never below the finest training scale), so that the galaxy has the requested
        size in arcsec with the neighbour's size in pixels; whatever size in pixels is left to
        change (requests smaller than any galaxy at the finest scale) and the type and axis ratio
        are moved in latent space by the forward regressor. Each galaxy takes its neighbour's
        flux.

        Returns:
            dict: ``latent`` ``(N, latent_dim)``; ``pixel_scale`` and ``flux`` ``(N,)`` arrays
            for a :attr:`scale_model` (``flux`` None without training fluxes), else None.
        """
        req, nb = self._neighbours(t, hlr, q)
        rng = as_deviate(rng)
        u = rng.np.random(len(nb))
        pick = nb[np.arange(len(nb)), np.minimum((u * self.k).astype(int), self.k - 1)]
        z = self.a["latents"]
        scale = flux = None
        if self.scale_model:
            own = self.a["pixel_scales"][pick]
            stretch = 10 ** (req[:, 1] - self.a["attrs"][pick, 1])
            scale = np.maximum(own * stretch, float(self.a["min_pixel_scale"]))
            target = req.copy()
            target[:, 1] -= np.log10(scale)
            base = self.a["attrs_pixel"][pick]
            if "log10_fluxes" in self.a:
                flux = 10 ** self.a["log10_fluxes"][pick]
        else:
            target, base = req, self.a["attrs"][pick]
        # The neighbour's latent, moved by the regressor from its attributes to the request's.
        shift = _apply_mlp(self.a, "fwd_", target) - _apply_mlp(self.a, "fwd_", base)
        spread = z[nb].std(axis=1)
        g = rng.np.standard_normal(z.shape[1] * len(nb))
        latent = z[pick] + shift + self.jitter * spread * g.reshape(len(nb), -1)
        return {"latent": latent, "pixel_scale": scale, "flux": flux}

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

    def estimate(self, latents, pixel_scale=None) -> dict:
        """``hubble_type`` (T), ``half_light_radius`` (arcsec) and ``axis_ratio`` of latents.

        The latents are those of stamps as they are (any orientation), as from
        :func:`galsim_vae.encode_catalog` or :meth:`VAEModel.encode`; a :attr:`scale_model`
        needs each stamp's ``pixel_scale`` (arcsec) too.
        """
        x = np.atleast_2d(np.asarray(latents, dtype=float))
        if self.scale_model:
            if pixel_scale is None:
                raise GalSimValueError(
                    "this attribute model needs each latent's pixel_scale (a flux model's "
                    "galaxies have their own)",
                    pixel_scale,
                )
            sc = np.broadcast_to(np.asarray(pixel_scale, dtype=float), (len(x),))
            if np.any(~(sc > 0)):
                raise GalSimRangeError("pixel_scale must be positive", pixel_scale, 0)
            x = np.column_stack([x, np.log10(sc)])
        y = _apply_mlp(self.a, "inv_", x)
        return {
            "hubble_type": np.clip(y[:, 0], -5, 10),
            "half_light_radius": 10 ** y[:, 1],
            "axis_ratio": np.clip(y[:, 2], 0.05, 1.0),
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
