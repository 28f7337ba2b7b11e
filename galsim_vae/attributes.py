"""Attributes <-> latents: galaxies by Hubble type and size (the paper's section 8 idea).

Attributes: Hubble type (class name or numeric T-type), half-light radius (arcsec) and axis
ratio; position angle and flux are applied afterwards as GalSim transformations (the model is
fitted on stamps turned so that the galaxy's major axis lies along x).

Hubble type is not a column of the COSMOS data: it is derived from the bulge-to-total flux ratio
with the mean relation of Simien & de Vaucouleurs (1986, ApJ 302, 564),
``Delta m = -2.5 log10(B/T) = 0.324 x - 0.054 x^2 + 0.0047 x^3`` with ``x = T + 5``, which is
monotonic over ``-5 <= T <= 10``. It is a mean relation: at fixed B/T real galaxies spread over
several T-types, so the T-types here are a smooth proxy for bulge dominance, not visual classes.
Class names map to E = -5, S0 = -2, Sa = 1, Sb = 3, Sc = 5, Sd = 7, Irr = 10.

Two nearest-neighbour models over training pairs of (attributes, latent), stored as plain arrays
(npz + JSON, no pickle):

- forward, :meth:`AttributeModel.sample`: attributes -> one of the latents of the training
  galaxies nearest to the request, jittered, so one request gives many plausible galaxies;
- inverse, :meth:`AttributeModel.estimate`: latents -> mean (T, hlr, q) of the nearest training
  latents.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .errors import GalSimRangeError, GalSimValueError

__all__ = [
    "HUBBLE_TYPES",
    "ttype",
    "bt_to_ttype",
    "ttype_to_bt",
    "AttributeModel",
    "attributes_path",
]

HUBBLE_TYPES = {"E": -5.0, "S0": -2.0, "Sa": 1.0, "Sb": 3.0, "Sc": 5.0, "Sd": 7.0, "Irr": 10.0}
_C = (0.324, -0.054, 0.0047)


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


def attributes_path(model_file) -> Path:
    """Where a model's attribute models live: ``<stem>_attributes.npz`` beside it."""
    p = Path(model_file)
    return p.with_name(p.name.replace(".safetensors", "") + "_attributes.npz")


class AttributeModel:
    """Forward (attributes -> latents) and inverse (latents -> attributes) nearest-neighbour models.

    Both are built on a training set of (attributes, latent) pairs, stored as plain arrays:

    - forward: the ``k`` training galaxies nearest to the request in scaled attribute space
      (T / std(T), log10 hlr / std, q / std); one of them is picked at random and its latent
      jittered by ``jitter`` times the neighbours' latent spread: a conditional distribution
      that only proposes latents of galaxies that look like the request;
    - inverse: the mean attributes of the ``k`` nearest training latents.
    """

    def __init__(self, arrays: dict, meta: dict):
        self.a = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
        self.meta = dict(meta)
        self.k = int(self.meta.get("k", 16))
        self.jitter = float(self.meta.get("jitter", 0.25))

    @classmethod
    def fit(cls, latents, t, hlr, q, *, k=16, jitter=0.25, meta=None) -> AttributeModel:
        """Store the training pairs (latents of canonically oriented stamps, attributes)."""
        import sklearn

        z = np.asarray(latents, dtype=float)
        attrs = np.stack(
            [np.asarray(t, float), np.log10(np.asarray(hlr, float)), np.asarray(q, float)], axis=1
        )
        arrays = {
            "latents": z,
            "attrs": attrs,
            "attr_scale": attrs.std(axis=0),
            "hlr_range": np.percentile(hlr, [1, 99]),
            "q_range": np.percentile(q, [1, 99]),
            "q_median": np.median(q),
        }
        m = {
            "sklearn_version": sklearn.__version__,
            "n_fit": int(len(z)),
            "k": int(k),
            "jitter": float(jitter),
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
        return cls(arrays, meta)

    def check(self, half_light_radius, axis_ratio):
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

    def _neighbours(self, t, hlr, q, chunk=1024):
        req = np.stack(
            [
                np.broadcast_to(np.asarray(v, dtype=float), np.shape(np.atleast_1d(hlr)))
                for v in (t, np.log10(hlr), q)
            ],
            axis=1,
        )
        ref = self.a["attrs"] / self.a["attr_scale"]
        req = req / self.a["attr_scale"]
        # In chunks: a whole catalog at once would need an (N, n_train, 3) array.
        out = []
        for i in range(0, len(req), chunk):
            d = ((ref[None] - req[i : i + chunk, None]) ** 2).sum(axis=2)
            out.append(np.argsort(d, axis=1)[:, : self.k])
        return np.concatenate(out)

    def mean(self, t, hlr, q) -> np.ndarray:
        """Mean latent of the neighbours of each attribute set."""
        return self.a["latents"][self._neighbours(t, hlr, q)].mean(axis=1)

    def sample(self, t, hlr, q, rng) -> np.ndarray:
        """One latent per attribute set from the conditional distribution, with a GalSim rng."""
        import galsim

        nb = self._neighbours(t, hlr, q)
        ud = galsim.UniformDeviate(rng)
        u = np.empty(len(nb))
        ud.generate(u)
        pick = nb[np.arange(len(nb)), np.minimum((u * self.k).astype(int), self.k - 1)]
        z = self.a["latents"]
        spread = z[nb].std(axis=1)
        g = np.empty(z.shape[1] * len(nb))
        galsim.GaussianDeviate(rng).generate(g)
        return z[pick] + self.jitter * spread * g.reshape(len(nb), -1)

    def estimate(self, latents) -> dict:
        """``hubble_type`` (T), ``half_light_radius`` (arcsec) and ``axis_ratio`` of latents."""
        z = np.atleast_2d(np.asarray(latents, dtype=float))
        zt = self.a["latents"]
        zt2 = (zt**2).sum(1)[None]
        # In chunks of 1024 latents: one (N, n_train) distance matrix for a whole catalog
        # would not fit in memory.
        y = np.concatenate(
            [
                self.a["attrs"][
                    np.argsort((zc**2).sum(1)[:, None] - 2 * zc @ zt.T + zt2, axis=1)[:, : self.k]
                ].mean(axis=1)
                for zc in (z[i : i + 1024] for i in range(0, len(z), 1024))
            ]
        )
        return {
            "hubble_type": np.clip(y[:, 0], -5, 10),
            "half_light_radius": 10 ** y[:, 1],
            "axis_ratio": np.clip(y[:, 2], 0.05, 1.0),
        }


def _canonical_attributes(table):
    """(T, hlr, q, beta_deg) of simulated rows: the dominant component sets q and orientation."""
    bf = np.asarray(table["bulge_fraction"], dtype=float)
    dom = bf > 0.5
    q = np.where(dom, table["bulge_q"], table["disk_q"]).astype(float)
    beta = np.where(dom, table["bulge_beta"], table["disk_beta"]).astype(float)
    return bt_to_ttype(bf), np.asarray(table["hlr"], dtype=float), q, beta


def _measure_hlr(stamps, psf, scale):
    """Half-light radius (arcsec) and Sersic n of stamps, by PSF-convolved Sersic fits."""
    import galsim

    from .sersic import fit_sersic_lsq

    if isinstance(psf, galsim.GSObject):  # an image is much cheaper to convolve with
        psf = psf.drawImage(
            nx=48, ny=48, scale=scale, method="no_pixel", use_true_center=False
        ).array
    out = []
    for s in stamps:
        # Decoded stamps carry the training stamps' sky pedestal: remove it (border median).
        s = s - np.median(
            np.concatenate([s[:4].ravel(), s[-4:].ravel(), s[:, :4].ravel(), s[:, -4:].ravel()])
        )
        sig = max(float(np.std(np.concatenate([s[:4].ravel(), s[-4:].ravel()]))), 1e-3 * s.max())
        f = fit_sersic_lsq(s, psf, sig, scale=scale)
        out.append((f.params[1], f.params[2]))
    return np.array(out)


def fit_attribute_model(
    dataset, model=None, *, max_rows=8000, report_dir=None, n_per=24, seed=0, real_dataset=None
):
    """Fit the attribute models on a simulated dataset, and measure how well they work.

    Returns:
        tuple: ``(AttributeModel, report dict)``.
    """
    import galsim

    from .analysis import rotate_stamps
    from .dataset import read_dataset
    from .galaxy import hst_f814w_psf
    from .metrics import normalize
    from .model import get_model

    m = get_model(model)
    images, table, _, _ = read_dataset(dataset)
    need = ("bulge_fraction", "hlr", "disk_q", "bulge_q", "disk_beta", "bulge_beta")
    if any(c not in table.colnames for c in need):
        raise GalSimValueError(
            "fit-attributes needs a simulated dataset (true attributes)",
            [c for c in need if c not in table.colnames],
        )
    sel = np.flatnonzero(np.asarray(table["passes"], dtype=bool))[:max_rows]
    t, hlr, q, beta = _canonical_attributes(table[sel])
    x = np.array([rotate_stamps(im[None], -b)[0] for im, b in zip(images[sel], beta)])
    z, _ = m.encode_normalized(normalize(x)[0])
    split = np.asarray(table["split"])[sel]
    tr = split == "train"
    am = AttributeModel.fit(
        z[tr],
        t[tr],
        hlr[tr],
        q[tr],
        meta={
            "dataset": Path(dataset).name,
            "model_sha256": m.metadata["sha256"],
            "n_rows": int(tr.sum()),
        },
    )
    rep = {}
    ho = ~tr
    est = am.estimate(z[ho])
    ratio = est["half_light_radius"] / hlr[ho]
    rep["inverse_heldout_n"] = int(ho.sum())
    rep["inverse_hlr_bias"] = float(np.median(ratio) - 1)
    rep["inverse_hlr_scatter"] = float(np.std(np.log(ratio)))
    rep["inverse_ttype_rms"] = float(np.sqrt(np.mean((est["hubble_type"] - t[ho]) ** 2)))
    rng = galsim.BaseDeviate(seed)
    psf = hst_f814w_psf()
    lo, hi = am.a["hlr_range"]
    sizes = np.geomspace(max(lo, 0.08), hi, 5)
    qm = float(am.a["q_median"])
    med = []
    for h in sizes:
        zz = am.sample(np.full(n_per, 3.0), np.full(n_per, h), np.full(n_per, qm), rng)
        stamps = m.decode_flux(zz)
        med.append(float(np.median(_measure_hlr(stamps, psf, m.pixel_scale)[:, 0])))
    rep["size_requested"] = sizes.tolist()
    rep["size_measured_median"] = med
    rep["size_max_rel_error"] = float(np.max(np.abs(np.array(med) / sizes - 1)))
    types = list(HUBBLE_TYPES)
    ns = []
    for name in types:
        zz = am.sample(
            np.full(n_per, HUBBLE_TYPES[name]), np.full(n_per, 0.3), np.full(n_per, qm), rng
        )
        ns.append(float(np.median(_measure_hlr(m.decode_flux(zz), psf, m.pixel_scale)[:, 1])))
    rep["types"] = types
    rep["sersic_n_by_type"] = ns
    if real_dataset is not None:
        from .sersic import fit_sersic_lsq

        ri, rt, rp, _ = read_dataset(real_dataset)
        rs = np.flatnonzero(np.asarray(rt["passes"], dtype=bool))
        zr, _ = m.encode_normalized(normalize(ri[rs])[0])
        er = am.estimate(zr)["half_light_radius"]
        fr = np.array(
            [
                fit_sersic_lsq(
                    ri[k], rp[int(rt["psf_index"][k])], float(rt["noise_sigma"][k])
                ).params[1]
                for k in rs
            ]
        )
        r = er / fr
        rep["real_n"] = int(len(rs))
        rep["real_hlr_bias_vs_sersic"] = float(np.median(r) - 1)
        rep["real_hlr_scatter_vs_sersic"] = float(np.std(np.log(r)))
    if report_dir is not None:
        from .plots import plot_attribute_report

        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        plot_attribute_report(rep, d / "attributes.png")
        with atomic_path(d / "attributes.json") as tmp:
            tmp.write_text(json.dumps(rep, indent=1))
    return am, rep
