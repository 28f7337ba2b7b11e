"""VAEGalaxy: a galaxy decoded by the VAE, as a GalSim ``GSObject``."""

from __future__ import annotations

import galsim
import numpy as np
from galsim import GSObject
from galsim.errors import galsim_warn
from galsim.utilities import lazy_property

from ._utils import as_deviate, check_count, item_seed
from .attributes import ttype
from .errors import (
    GalSimIncompatibleValuesError,
    GalSimRangeError,
    GalSimValueError,
)
from .model import MAX_LATENT, VAEModel, default_model_path, get_model
from .psf import F814W_ZEROPOINT, HST_PIXEL_SCALE, hst_f814w_psf, psf_sigma
from .stamp import DEFAULT_SEED, border_sky, half_light_radius, image_stamp, negative_light

__all__ = [
    "VAEGalaxy",
    "PSF_MODES",
    "MAX_BORDER_SKY",
    "MAX_NEGATIVE_LIGHT",
    "GUARD_REDRAWS",
    "GUARD_BATCH",
    "guard_refuses",
    "reconvolve",
]

PSF_MODES = ("keep", "deconvolve")

#: The default of :meth:`VAEGalaxy.sample`'s ``max_border_sky``: a sampled galaxy whose decoded
#: stamp's border holds more than this fraction of its flux (:attr:`VAEGalaxy.border_sky`) is
#: drawn again: 0.6% of the shipped model's samples (v6; v5 0.4%), faint ones with a mottled floor
#: (docs/figures/worst_sky_samples.png).
MAX_BORDER_SKY = 0.25

#: The default of :meth:`VAEGalaxy.sample`'s ``max_negative_light``: a sampled galaxy whose
#: decoded stamp's negative pixels sum to more than this fraction of its flux
#: (:attr:`VAEGalaxy.negative_light`; a noiseless galaxy has none) is drawn again. Beyond it the
#: stamps carry a mottled floor at HST resolution and light and dark blotches after a
#: ground-based PSF; 12% of the shipped model's samples (v6), mostly faint ones.
MAX_NEGATIVE_LIGHT = 0.1

#: How many latents :meth:`VAEGalaxy.sample` tries for a guarded galaxy at its own pixel scale
#: and flux (the joint density conditioned on both, so sizes and magnitudes keep their
#: distribution), :data:`GUARD_BATCH` at a time in one decode, before it draws the galaxy anew.
GUARD_REDRAWS = 12
GUARD_BATCH = 4


def guard_refuses(gal, max_border_sky=MAX_BORDER_SKY, max_negative_light=MAX_NEGATIVE_LIGHT):
    """``(border, negative)``: whether the sampling guard of :meth:`VAEGalaxy.sample` refuses
    drawable galaxy ``gal`` for its border sky, and for its negative light (None turns a test
    off); ``(False, False)`` for a galaxy that cannot be drawn (``sample`` drops it anyway)."""
    if not gal._drawable:
        return False, False
    border = max_border_sky is not None and not abs(gal.border_sky) <= max_border_sky
    negative = max_negative_light is not None and not gal.negative_light <= max_negative_light
    return border, negative


def _deconvolved_psf(gal):
    """The original PSF of a deconvolve-mode VAEGalaxy inside ``gal`` (through
    transformations), transformed as the galaxy was; None for anything else."""
    jacs = []
    while isinstance(gal, galsim.Transformation):
        jacs.append(gal.jac)
        gal = gal.original
    if not (isinstance(gal, VAEGalaxy) and gal.psf_mode == "deconvolve"):
        return None
    psf = gal.original_psf
    for jac in reversed(jacs):
        psf = galsim.Transformation(psf, jac=jac)
    return psf


def reconvolve(gal, psf, *, gsparams=None):
    """``galsim.Convolve(gal, psf)``, refusing a target PSF narrower than the galaxy's own.

    For a :class:`VAEGalaxy` with ``psf_mode="deconvolve"`` (or a transformation of one: sheared,
    rotated, magnified, shifted) the result is only valid when the target PSF is at least as wide
    as the deconvolved original PSF, transformed as the galaxy was (as for ``RealGalaxy``); a
    narrower one would amplify the model's high-frequency errors without bound. Any other object
    is convolved as it is.

    Parameters:
        gal: the galaxy profile.
        psf: the target PSF profile.
        gsparams: a ``galsim.GSParams`` for the convolution. [default: None]
    """
    original = _deconvolved_psf(gal)
    if original is not None:
        s_t, s_o = psf_sigma(psf), psf_sigma(original)
        if s_t < s_o:
            raise GalSimRangeError(
                f"Target PSF (sigma {s_t:.4f} arcsec) is narrower than the galaxy's original PSF "
                f"(sigma {s_o:.4f} arcsec): a deconvolved VAEGalaxy can only be reconvolved with a "
                "wider PSF",
                s_t,
                s_o,
            )
    return galsim.Convolve(gal, psf, gsparams=gsparams)


_CATALOGS: dict = {}


def _local_catalog(cat):
    """``cat`` itself, or for the proxy of a ``RealGalaxyCatalog`` that GalSim's config gives
    each process (whose columns are not reachable through it), this process's own copy of that
    catalog file, opened once."""
    if isinstance(cat, galsim.RealGalaxyCatalog):
        return cat
    name = cat.getFileName()
    if name not in _CATALOGS:
        _CATALOGS[name] = galsim.RealGalaxyCatalog(name)
    return _CATALOGS[name]


class VAEGalaxy(GSObject):
    """A galaxy decoded from a VAE latent vector, usable wherever GalSim takes a ``GSObject``.

    The decoder turns the latent vector into a stamp in [0, 1]; the stamp is returned to flux
    units with its normalisation constants and wrapped in a ``galsim.InterpolatedImage`` at the
    model's pixel scale (0.03"/px for the shipped model), with the galaxy centre (stamp pixel
    ``(S/2, S/2)``, 0-based) at the profile's origin.

    Flux: by default the flux of the decoded stamp in the training catalog's units (COSMOS
    F814W counts/s for the shipped model), using ``norm_min``/``norm_max`` when given (as
    :meth:`from_image` does: they must be those of the stamp the latent was encoded from) and the
    training set's median constants otherwise. Sky: with the constants of the stamp a latent came
    from, the decoded sky is zero (the decoder learned the mean of zero-mean noise) and nothing is
    subtracted; with the median constants it is not, and it is removed by
    :meth:`VAEModel.sky_free_constants <galsim_vae.VAEModel.sky_free_constants>` (the model's
    sky predictor; without one, the median of the stamp's 4-pixel border, which also removes
    the faint outskirts of galaxies that reach the border). ``flux=`` overrides the flux;
    ``withFlux`` and friends work as for any GSObject.

    PSF: the training stamps contain the HST PSF. ``psf_mode="keep"`` (default) leaves it in, so
    the object is the galaxy as HST saw it; convolved with another PSF it carries the HST PSF
    too, which is negligible for ground-based PSFs (0.1" against 0.6"+) but not for space-like
    ones. ``psf_mode="deconvolve"`` divides out ``original_psf`` (default :func:`hst_f814w_psf`)
    as ``galsim.RealGalaxy`` does; such an object must then be convolved with a PSF at least as
    wide (use :func:`reconvolve`, which checks), and is drawn by FFT only.

    A galaxy at a pixel scale coarser than the HST 0.03"/px (a flux model's large galaxies, or
    ``pixel_scale=``) is the galaxy as HST saw it resampled onto larger pixels: its stamp holds
    the HST PSF convolved with that pixel, so ``"keep"`` carries both and ``"deconvolve"``
    divides out both by default (``original_psf``). Giving a min-max model's galaxy another
    ``pixel_scale`` scales the whole stamp, PSF included: the HST PSF in it grows with it.

    The object never holds the torch model: it holds the model's file name and asks
    :func:`galsim_vae.model.get_model` for the (per-process, cached) model when it needs to decode.

    Parameters:
        latent: the latent vector (length = the model's latent size).
        model: a :class:`VAEModel` or a weights file name; the shipped model when None.
            [default: None]
        flux: total flux; the decoded stamp's own flux when None. [default: None]
        norm_min, norm_max: normalisation constants (flux units) of the stamp the latent came
            from. [default: None, the training set's medians]
        psf_mode: ``"keep"`` or ``"deconvolve"``. [default: "keep"]
        original_psf: the PSF to deconvolve in ``"deconvolve"`` mode. [default: None,
            :func:`hst_f814w_psf`]
        x_interpolant: real-space interpolant of the ``InterpolatedImage``. [default: quintic]
        k_interpolant: Fourier-space interpolant. [default: quintic]
        pad_factor: zero-padding factor of the ``InterpolatedImage``. [default: 4]
        gsparams: a ``galsim.GSParams``. [default: None]
        pixel_scale: arcsec per pixel of the decoded stamp: the galaxy's size is the stamp's
            size in pixels times this. [default: None, the model's scale; for a galaxy from
            :meth:`sample` or :meth:`from_image` of a flux model, its own]

    Flux-representation models (``VAEModel.representation == "flux"``) decode stamps that sum to
    a constant and have no sky: their galaxies take ``flux`` (the training set's median when
    None) and ``pixel_scale``, and refuse ``norm_min``/``norm_max``. Min-max models (the paper's,
    and the shipped one) work as described above.
    """

    # GalSim's config conventions, as its own types declare them: the YAML type ``VAEGalaxy``
    # (:mod:`galsim_vae.config`, listed in docs/yaml.md) takes these keys, and ``latent`` (a list
    # of numbers or an expression giving one, read apart). Which of them go together (one way of
    # choosing a galaxy) is checked when the galaxy is built.
    _req_params = {}
    _opt_params = {
        "index": int,
        "sampling": str,
        "flux": float,
        "norm_min": float,
        "norm_max": float,
        "pixel_scale": float,
        "psf_mode": str,
        "pad_factor": float,
        "hubble_type": str,
        "half_light_radius": float,
        "axis_ratio": float,
        "position_angle": float,
        "out_of_range": str,
        "magnitude": float,
        "redshift": float,
        "id": str,
        "random": bool,
        "max_border_sky": float,
        "max_negative_light": float,
        "refine": int,
    }
    _single_params = []
    _takes_rng = True

    _has_hard_edges = False
    _is_axisymmetric = False
    _is_analytic_k = True

    def __init__(
        self,
        latent,
        model=None,
        *,
        flux=None,
        norm_min=None,
        norm_max=None,
        psf_mode="keep",
        original_psf=None,
        x_interpolant=None,
        k_interpolant=None,
        pad_factor=4,
        gsparams=None,
        pixel_scale=None,
        _stamp=None,
    ):
        if isinstance(model, VAEModel):
            self._model_file = model.file_name
            m = model
        elif model is None or isinstance(model, str):
            self._model_file = str(default_model_path()) if model is None else str(model)
            m = None
        else:
            raise TypeError(f"model must be a VAEModel, a file name or None, got {model!r}")
        if isinstance(latent, (str, bytes)):
            raise TypeError(f"latent must be a sequence of numbers, got {latent!r}")
        z = np.asarray(latent, dtype=float) if not np.isscalar(latent) else None
        if z is None:
            raise TypeError(f"latent must be a sequence of numbers, got {latent!r}")
        if z.ndim != 1:  # a (2, 32) array is two halves of something, not one latent
            raise GalSimValueError("VAEGalaxy latent must be one sequence of numbers", z.shape)
        if not np.all(np.isfinite(z)):
            raise GalSimValueError("VAEGalaxy latent contains NaN or infinite values", latent)
        if np.any(np.abs(z) > MAX_LATENT):
            raise GalSimRangeError(
                f"VAEGalaxy latent values beyond +-{MAX_LATENT:g} lie far outside the model's "
                "latent space",
                float(np.abs(z).max()),
                -MAX_LATENT,
                MAX_LATENT,
            )
        m = m if m is not None else get_model(self._model_file)
        if len(z) != m.latent_dim:
            raise GalSimValueError(
                f"VAEGalaxy latent must have {m.latent_dim} values for model {self._model_file}",
                len(z),
            )
        if psf_mode not in PSF_MODES:
            raise GalSimValueError("Unknown psf_mode", psf_mode, PSF_MODES)
        if original_psf is not None and psf_mode != "deconvolve":
            raise GalSimIncompatibleValuesError(
                "original_psf is only used with psf_mode='deconvolve'",
                psf_mode=psf_mode,
                original_psf=original_psf,
            )
        if original_psf is not None and not isinstance(original_psf, GSObject):
            raise TypeError(f"original_psf must be a GSObject, got {original_psf!r}")
        if flux is not None and not np.isfinite(flux):
            raise GalSimValueError("flux must be finite", flux)
        if pixel_scale is not None and not (np.isfinite(pixel_scale) and pixel_scale > 0):
            raise GalSimRangeError("pixel_scale must be positive", pixel_scale, 0)
        if m.representation == "flux" and (norm_min is not None or norm_max is not None):
            raise GalSimIncompatibleValuesError(
                "a flux-representation model's galaxies take flux=, not norm_min/norm_max",
                norm_min=norm_min,
                norm_max=norm_max,
            )
        if (norm_min is None) != (norm_max is None):
            raise GalSimIncompatibleValuesError(
                "give both norm_min and norm_max, or neither", norm_min=norm_min, norm_max=norm_max
            )
        if norm_min is not None and not norm_max > norm_min:
            raise GalSimRangeError("norm_max must exceed norm_min", norm_max, norm_min)
        self.latent = tuple(float(v) for v in z)
        self._flux_in = None if flux is None else float(flux)
        self._norm = None if norm_min is None else (float(norm_min), float(norm_max))
        self.psf_mode = psf_mode
        self._original_psf = original_psf
        self._x_interpolant = x_interpolant
        self._k_interpolant = k_interpolant
        self._pad_factor = pad_factor
        self._gsparams = galsim.GSParams.check(gsparams)
        self._pixel_scale = m.pixel_scale if pixel_scale is None else float(pixel_scale)
        self._scale_in = None if pixel_scale is None else float(pixel_scale)
        self._representation = m.representation
        self._median_flux = m.median_flux
        if _stamp is not None:
            self.__dict__["_stamp"] = np.asarray(_stamp, dtype=float)

    # ---- construction helpers ----------------------------------------------------------
    @classmethod
    def sample(
        cls,
        n,
        rng=None,
        model=None,
        *,
        sampling="density",
        min_flux=None,
        max_flux=None,
        min_hlr=None,
        max_hlr=None,
        magnitude=None,
        redshift=None,
        max_border_sky=MAX_BORDER_SKY,
        max_negative_light=MAX_NEGATIVE_LIGHT,
        **kwargs,
    ):
        """``n`` galaxies with latents drawn from the model, decoded in one batch.

        With a flux model's joint density each galaxy also gets its own pixel scale (size) and
        flux: by default with the F814W magnitudes of the COSMOS F814W<23.5 sample where the
        density stores them (the shipped one does), each galaxy's shape and size drawn given its
        magnitude; ``magnitude=`` sets them. Cuts like ``COSMOSCatalog``'s select galaxies by
        flux and half-light radius: more galaxies are drawn and those outside the cuts rejected
        (the flux cut before decoding), in rounds, until ``n`` pass (with one magnitude per
        galaxy, each rejected galaxy is redrawn at its own magnitude, so galaxy ``i`` has
        magnitude ``i``). A latent from the density's tails that decodes to no positive
        flux (a flux model's) is never returned.

        The sampling guard: a decoded stamp whose border holds more than ``max_border_sky`` of
        its flux (:attr:`border_sky`), or whose negative pixels sum to more than
        ``max_negative_light`` of it (:attr:`negative_light`), is not returned either: both
        are a faint sample's mottled floor, which a noiseless galaxy does not have. With a joint
        density of pixel scales and fluxes such a galaxy's latent is drawn again at its own pixel
        scale and flux (up to :data:`GUARD_REDRAWS` latents, :data:`GUARD_BATCH` a decode; a
        galaxy for which all fail, mostly small ones, is then drawn anew), so the guard leaves
        the distribution of sizes and magnitudes close to the density's; otherwise the galaxy
        is drawn anew at once. It is a cut on the model's output, not a fix of the model;
        ``None`` turns either test off.

        Parameters:
            n: number of galaxies.
            rng: a ``galsim.BaseDeviate`` (or int seed): same seed, same galaxies.
                [default: None]
            model: as for the constructor. [default: None]
            sampling: ``"density"`` (the latent density learned from the training set) or
                ``"prior"`` (unit Gaussian). [default: "density"]
            min_flux, max_flux: cuts on the sampled flux (flux models with a joint density).
                [default: None]
            min_hlr, max_hlr: cuts on :attr:`half_light_radius` (arcsec). [default: None]
            magnitude: F814W AB magnitude (one, or one per galaxy) to draw the galaxies at;
                ``"cosmos"`` or ``"training"`` for the COSMOS or the training set's
                distribution; None: the density's default (:meth:`VAEModel.sample_population`).
                Not with ``flux=``. [default: None]
            redshift: a redshift (one, or one per galaxy): each galaxy gets the F814W magnitude
                of a COSMOS galaxy at about that redshift
                (:meth:`LatentDensity.magnitudes_at_redshift
                <galsim_vae.LatentDensity.magnitudes_at_redshift>`, the photometric redshifts of
                the density's ``redshift_prior``), and is drawn at it; its shape and size follow
                from the magnitude, as with ``magnitude=``. Not with ``magnitude=``, ``flux=``,
                flux cuts or ``sampling="prior"``. [default: None]
            max_border_sky: the largest ``|border_sky|`` a returned galaxy may have; None
                returns every drawable galaxy (as the population study does, to measure the
                model itself). [default: :data:`MAX_BORDER_SKY`, 0.25]
            max_negative_light: the largest :attr:`negative_light` a returned galaxy may have;
                None: no limit. [default: :data:`MAX_NEGATIVE_LIGHT`, 0.1]
            **kwargs: passed to the constructor (``flux``, ``psf_mode``, ...).

        Returns:
            list of VAEGalaxy.
        """
        n = check_count(n)
        if max_border_sky is not None and not max_border_sky > 0:
            raise GalSimRangeError("max_border_sky must be positive", max_border_sky, 0)
        if max_negative_light is not None and not max_negative_light > 0:
            raise GalSimRangeError("max_negative_light must be positive", max_negative_light, 0)
        for key in ("flux", "pixel_scale"):
            if key in kwargs and np.ndim(kwargs[key]) > 0:
                raise GalSimValueError(
                    f"sample takes one {key} for all its galaxies (give one per galaxy to "
                    "from_latents, or magnitude= per galaxy to sample)",
                    kwargs[key],
                )
        m = model if isinstance(model, VAEModel) else get_model(model)
        rng = as_deviate(rng)
        lo = -np.inf if min_hlr is None else min_hlr
        hi = np.inf if max_hlr is None else max_hlr
        if redshift is not None:
            if magnitude is not None or "flux" in kwargs:
                raise GalSimIncompatibleValuesError(
                    "give redshift, magnitude or flux, not two of them",
                    redshift=redshift,
                    magnitude=magnitude,
                    flux=kwargs.get("flux"),
                )
            if min_flux is not None or max_flux is not None:  # its magnitudes are the catalog's
                raise GalSimIncompatibleValuesError(
                    "redshift= gives each galaxy a COSMOS galaxy's magnitude; flux cuts do not go "
                    "with it (draw magnitudes with LatentDensity.magnitudes_at_redshift and cut "
                    "those)",
                    redshift=redshift,
                    min_flux=min_flux,
                    max_flux=max_flux,
                )
            if sampling != "density":
                raise GalSimIncompatibleValuesError(
                    "redshift= needs sampling='density'", redshift=redshift, sampling=sampling
                )
            if np.ndim(redshift) == 1 and len(redshift) != n:
                raise GalSimValueError(f"give one redshift or {n}", len(redshift))
            if m.density is None:
                raise GalSimValueError("redshift= needs the model's latent density", m.file_name)
            magnitude = m.density.magnitudes_at_redshift(np.broadcast_to(redshift, (n,)), rng)
        per_galaxy = np.ndim(magnitude) == 1
        if per_galaxy and len(magnitude) != n:
            raise GalSimValueError(f"give one magnitude or {n}", len(magnitude))
        numeric = magnitude is not None and not isinstance(magnitude, str)
        if numeric and "flux" in kwargs:
            raise GalSimIncompatibleValuesError(
                "give magnitude or flux, not both", magnitude=magnitude, flux=kwargs["flux"]
            )
        if numeric and (min_flux is not None or max_flux is not None):  # fixed: fail at once
            f = 10 ** ((F814W_ZEROPOINT - np.asarray(magnitude, dtype=float)) / 2.5)
            out_of = np.any(f < (min_flux if min_flux is not None else -np.inf)) or np.any(
                f > (max_flux if max_flux is not None else np.inf)
            )
            if out_of:
                raise GalSimRangeError(
                    "a given magnitude is outside the flux cuts", magnitude, min_flux, max_flux
                )

        def draw(k, mag):
            """``k`` galaxies, None where one fails the cuts or decodes to no positive flux."""
            pop = m.sample_population(k, rng, sampling=sampling, magnitude=mag)
            if pop["flux"] is None and (min_flux is not None or max_flux is not None):
                raise GalSimIncompatibleValuesError(
                    "flux cuts need sampled fluxes: a flux model's joint density and "
                    "sampling='density'",
                    sampling=sampling,
                    model=m.file_name,
                )
            keep = np.ones(k, dtype=bool)
            per = {}
            if pop["flux"] is not None:  # a joint density: each galaxy its own scale and flux
                if min_flux is not None:
                    keep &= pop["flux"] >= min_flux
                if max_flux is not None:
                    keep &= pop["flux"] <= max_flux
                for k2 in ("pixel_scale", "flux"):
                    if k2 not in kwargs:  # the caller's value wins
                        per[k2] = pop[k2][keep]
            gals = [None] * k
            if keep.any():
                idx = np.flatnonzero(keep)
                made = cls.from_latents(pop["latent"][keep], m, **per, **kwargs)
                if pop["flux"] is not None and {"log10_pixel_scale", "log10_flux"} <= set(
                    m.density.aux_names
                ):
                    # A guarded galaxy's latent drawn again at its own pixel scale and flux.
                    made = redraw_guarded(made, pop["pixel_scale"][keep], pop["flux"][keep], per)
                for i, g in zip(idx, made):
                    # A latent from the density's tails can decode to no positive flux.
                    if (
                        g._drawable
                        and not guarded(g)
                        and (
                            (min_hlr is None and max_hlr is None) or lo <= g.half_light_radius <= hi
                        )
                    ):
                        gals[i] = g
            return gals

        def guarded(g, count=True):
            """Whether the sampling guard refuses drawable galaxy ``g``."""
            floor, neg = guard_refuses(g, max_border_sky, max_negative_light)
            if count:
                rejected["border_sky"] += int(floor)
                rejected["negative_light"] += int(neg)
            return floor or neg

        def redraw_guarded(made, scales, fluxes, per):
            made = list(made)
            bad = [j for j, g in enumerate(made) if guarded(g, count=False)]
            left = GUARD_REDRAWS
            while bad and left > 0:
                k = min(GUARD_BATCH, left)  # k candidates per galaxy, decoded together
                left -= k
                rows = np.repeat(bad, k)
                z, _ = m.density.sample_given(
                    rng,
                    check_range=False,
                    log10_pixel_scale=np.log10(scales[rows]),
                    log10_flux=np.log10(fluxes[rows]),
                )
                again = cls.from_latents(z, m, **{q: v[rows] for q, v in per.items()}, **kwargs)
                for t, j in enumerate(bad):
                    for g in again[t * k : (t + 1) * k]:
                        if g._drawable and not guarded(g, count=False):
                            made[j] = g
                            break
                bad = [j for j in bad if guarded(made[j], count=False)]
            return made

        rejected = {"border_sky": 0, "negative_light": 0}

        def give_up(got, drawn):
            if got < n and drawn > 50 * n + 1000:
                guard = (
                    f"; the sampling guard refused {rejected['border_sky']} whose stamp border "
                    f"holds more than max_border_sky={max_border_sky} of their flux and "
                    f"{rejected['negative_light']} with more than "
                    f"max_negative_light={max_negative_light} of it in negative pixels (a model "
                    "whose samples all carry a floor: pass None to keep them, 0 in a YAML "
                    "config)"
                    if rejected["border_sky"] or rejected["negative_light"]
                    else ""
                )
                raise GalSimRangeError(
                    f"Only {got} of {drawn} sampled galaxies pass the cuts (flux "
                    f"{min_flux}-{max_flux}, hlr {min_hlr}-{max_hlr}"
                    + (", at the given magnitudes" if numeric else "")
                    + f"); widen them{guard}",
                    got,
                    n,
                )

        if per_galaxy:  # galaxy i at magnitude i: each failed one redrawn at its own
            mags = np.asarray(magnitude, dtype=float)
            out, todo, drawn, per = [None] * n, np.arange(n), 0, 1
            while len(todo):
                cand = np.repeat(todo, per)  # after the first round, 4 tries per galaxy left
                gals = draw(len(cand), mags[cand])
                drawn += len(cand)
                for i, g in zip(cand, gals):
                    if out[i] is None:
                        out[i] = g
                todo = np.array([i for i in todo if out[i] is None], dtype=int)
                give_up(n - len(todo), drawn)
                per = 4
            return out
        out, drawn = [], 0
        while len(out) < n:
            # Refills of at least 64, but no more than 4 per galaxy asked for: one galaxy at a time
            # (the config path) redraws 4, not 64.
            k = n if not out and drawn == 0 else max(2 * (n - len(out)), min(64, 4 * n))
            out += [g for g in draw(k, magnitude) if g is not None]
            drawn += k
            give_up(len(out), drawn)
        return out[:n]

    @classmethod
    def from_latents(cls, latents, model=None, **kwargs):
        """One galaxy per row of ``latents``, decoded in one batch.

        ``norm_min``, ``norm_max``, ``flux`` and ``pixel_scale`` may be arrays, one value per
        galaxy.
        """
        m = model if isinstance(model, VAEModel) else get_model(model)
        z = m._check_latents(latents)
        stamps = m.decode(z)
        per = {}  # per-galaxy values (arrays)
        for k in ("norm_min", "norm_max", "flux", "pixel_scale"):
            if k in kwargs and np.ndim(kwargs[k]) > 0:
                per[k] = np.broadcast_to(np.asarray(kwargs.pop(k), dtype=float), (len(z),))
        return [
            cls(zi, m, _stamp=s, **{k: float(v[i]) for k, v in per.items()}, **kwargs)
            for i, (zi, s) in enumerate(zip(z, stamps))
        ]

    @classmethod
    def from_attributes(
        cls,
        hubble_type,
        half_light_radius,
        axis_ratio=None,
        *,
        position_angle=None,
        rng=None,
        model=None,
        out_of_range="clip",
        **kwargs,
    ):
        """Galaxies of the given Hubble type and size, drawn from the attribute model.

        Array-like attributes give one galaxy each (a batch); scalars give one galaxy. The
        latent is drawn from the conditional distribution of the model's attribute file, so the
        same request gives different plausible galaxies. A flux model's galaxy takes the pixel
        scale that gives it the requested size and the flux of the training galaxy it was drawn
        near; a min-max model's has the training set's median flux scale and its sky set to
        zero (the normalisation constants are shifted by :meth:`VAEModel.sky_free_constants
        <galsim_vae.VAEModel.sky_free_constants>`). The
        attribute model makes galaxies with their major axis along x; the position angle
        (degrees, counter-clockwise from +x) is applied as a GalSim rotation, uniform in
        [0, 360) from ``rng`` when not given, so that a population has no preferred direction
        (a shear simulation must not see one). ``flux=`` works as usual. A flux model's latent
        moved far from its training galaxy could decode to no positive flux and then fail to draw
        (``GalSimValueError``); none of the 720 galaxies its attribute check draws did.

        Parameters:
            hubble_type: class name (E, S0, Sa, Sb, Sc, Sd, Irr) or T-type in [-5, 10].
            half_light_radius: arcsec, inside the range the attribute model was fitted on.
            axis_ratio: minor/major axis ratio; the training median when None. [default: None]
            position_angle: degrees. [default: None, uniform random from ``rng``]
            rng: ``galsim.BaseDeviate`` or seed. [default: None]
            model: as for the constructor. [default: None]
            out_of_range: what a half-light radius outside the attribute model's range gets:
                ``"clip"`` (the nearest size in the range, with one ``GalSimWarning`` per call
                naming how many were clipped: a catalog-driven run is not stopped by a few
                unusual rows) or ``"raise"`` (``GalSimRangeError``). Sizes that are not finite
                and positive, and axis ratios outside (0, 1], always raise. [default: "clip"]
        """
        for name, value in (("hubble_type", hubble_type), ("half_light_radius", half_light_radius)):
            if value is None:
                raise GalSimValueError(f"from_attributes needs {name}", value)
        m = model if isinstance(model, VAEModel) else get_model(model)
        am = m.attributes
        if am.scale_model != (m.representation == "flux"):
            raise GalSimIncompatibleValuesError(
                "the attribute file is for another kind of model (refit it: galsim-vae "
                "fit-attributes)",
                representation=m.representation,
                scale_model=am.scale_model,
            )
        single = np.ndim(half_light_radius) == 0 and isinstance(hubble_type, (str, int, float))
        types = [hubble_type] if isinstance(hubble_type, (str, int, float)) else hubble_type
        t = np.array([ttype(h) for h in types], dtype=float)
        h = np.atleast_1d(np.asarray(half_light_radius, dtype=float))
        q = np.atleast_1d(
            np.asarray(am.a["q_median"] if axis_ratio is None else axis_ratio, dtype=float)
        )
        pa = np.atleast_1d(np.asarray(0.0 if position_angle is None else position_angle, float))
        if not np.all(np.isfinite(pa)):
            raise GalSimValueError("position_angle must be finite", position_angle)
        n = max(len(t), len(h), len(q), len(pa))
        if any(len(v) not in (1, n) for v in (t, h, q, pa)):
            raise GalSimIncompatibleValuesError(
                "from_attributes: give one value or one per galaxy for each attribute",
                hubble_type=len(t),
                half_light_radius=len(h),
                axis_ratio=len(q),
                position_angle=len(pa),
            )
        t, h, q, pa = (np.broadcast_to(v, (n,)) for v in (t, h, q, pa))
        if out_of_range not in ("clip", "raise"):
            raise GalSimValueError("Invalid out_of_range", out_of_range, ("clip", "raise"))
        if out_of_range == "clip" and np.all(np.isfinite(h)) and np.all(h > 0):
            lo, hi = am.a["hlr_range"]
            outside = (h < lo) | (h > hi)
            if outside.any():
                galsim_warn(
                    f"{int(outside.sum())} of {n} half_light_radius values outside the attribute "
                    f"model's range {float(lo):.3g}-{float(hi):.3g}\" clipped to it "
                    "(out_of_range='raise' refuses them instead)"
                )
                h = np.clip(h, lo, hi)
        am.check(h, q)
        rng = as_deviate(rng)
        pop = am.sample_population(t, h, q, rng)
        z = pop["latent"]
        if position_angle is None:  # random orientations, after the latents (same latents)
            pa = rng.np.random(n)
            pa = 360.0 * pa  # not 180: lopsided galaxies have no preferred half either
        if am.scale_model:  # each galaxy at its own scale, with its neighbour's flux
            per = {"pixel_scale": pop["pixel_scale"]}
            if pop["flux"] is not None:
                per["flux"] = pop["flux"]
            per.update(kwargs)  # the caller's values win
            gals = cls.from_latents(z, m, **per)
        elif "norm_min" in kwargs or "norm_max" in kwargs:
            gals = cls.from_latents(z, m, **kwargs)
        else:
            lo, hi = m.sky_free_constants(z)
            gals = cls.from_latents(z, m, norm_min=lo, norm_max=hi, **kwargs)
        gals = [g.rotate(float(p) * galsim.degrees) if p else g for g, p in zip(gals, pa)]
        return gals[0] if single else gals

    @classmethod
    def from_image(cls, image, model=None, *, noise=None, refine=0, noise_sigma=None, **kwargs):
        """Encode a stamp to a galaxy.

        The latent is the encoder's mean, or with ``refine`` the posterior mode found from it
        (:meth:`VAEModel.refine_latents`: closer to the stamp, at the cost of ``refine`` decoder
        passes); the stamp's normalisation constants are kept, so the galaxy has the stamp's
        flux scale. The encoder's latent sigma is in ``galaxy.latent_sigma``.

        Parameters:
            image: a ``galsim.Image`` (or an array) holding one galaxy at its centre, sky
                subtracted. A min-max model takes stamps of its own size and scale. A flux model
                takes a ``galsim.Image`` of any size with a pixel scale, e.g.
                ``RealGalaxyCatalog.getGalImage(k)``: one that is not the model's size is
                redrawn onto the model's stamp at its own scale or, where it does not fit, at the
                coarser scale where it does (:func:`galsim_vae.stamp.image_stamp`).
            model: :class:`VAEModel` or weights file; the shipped model when None.
            noise: the image's noise (e.g. ``RealGalaxyCatalog.getNoise(k)``), padding a
                redrawn image that is smaller than the stamp; white noise at the image's border
                variance when None. [default: None]
            refine: flux models: steps of refinement of the latent (100 is the library's
                default, :data:`galsim_vae.model.REFINE_STEPS`); 0 keeps the encoder's mean.
                [default: 0]
            noise_sigma: with ``refine``, the stamp's noise sigma (flux units); measured on the
                stamp's border when None. [default: None]
            **kwargs: passed to :class:`VAEGalaxy` (``flux``, ``pixel_scale``, ``gsparams``...).
        """
        m = model if isinstance(model, VAEModel) else get_model(model)
        scale = None
        shape = np.shape(getattr(image, "array", image))
        if shape != (m.stamp_size, m.stamp_size) and not (
            m.representation == "flux" and isinstance(image, galsim.Image) and image.scale
        ):
            raise GalSimValueError(
                f"from_image takes a {m.stamp_size}x{m.stamp_size} stamp"
                + (
                    ", or (flux models) a galsim.Image of any size with its pixel scale"
                    if m.representation == "flux"
                    else ""
                ),
                shape,
            )
        if (
            m.representation == "flux"
            and isinstance(image, galsim.Image)
            and image.scale is not None
            and image.array.shape != (m.stamp_size, m.stamp_size)
        ):
            arr, s_ = image_stamp(image, stamp_size=m.stamp_size, noise=noise)
            image = galsim.Image(arr, scale=s_)
        if isinstance(image, galsim.Image):
            scale = image.scale
            if (
                m.representation == "minmax"
                and scale is not None
                and not np.isclose(scale, m.pixel_scale)
            ):
                raise GalSimValueError(
                    f"image scale must be the model's {m.pixel_scale} arcsec/pixel", image.scale
                )
            arr = image.array
        else:
            arr = np.asarray(image)
        enc = m.encode(arr, refine=refine, noise_sigma=noise_sigma)
        if len(enc["mu"]) != 1:
            raise GalSimValueError("from_image takes one stamp", np.shape(arr))
        if m.representation == "flux":
            kwargs.setdefault("flux", float(enc["flux"][0]))
            if scale is not None:
                kwargs.setdefault("pixel_scale", float(scale))
            if "pixel_scale" not in kwargs:  # the size of the galaxy: never guessed
                raise GalSimValueError(
                    "from_image with a flux model needs the image's scale: a galsim.Image "
                    "with a scale, or pixel_scale=",
                    None,
                )
            gal = cls(enc["mu"][0], m, **kwargs)
        else:
            gal = cls(
                enc["mu"][0], m, norm_min=enc["norm_min"][0], norm_max=enc["norm_max"][0], **kwargs
            )
        gal.latent_sigma = tuple(enc["sigma"][0])
        return gal

    @classmethod
    def from_real(
        cls,
        real_galaxy_catalog,
        index=None,
        id=None,
        random=False,
        rng=None,
        model=None,
        **kwargs,
    ):
        """The model's version of a galaxy of a ``galsim.RealGalaxyCatalog``, chosen as
        ``galsim.RealGalaxy`` chooses one (``random`` honours the catalog's ``weight`` column as
        it does): its postage stamp redrawn onto the model's stamp as :meth:`from_image` redraws
        one (:func:`galsim_vae.stamp.image_stamp`: at its own scale, or coarser where it does
        not fit, padded with the catalog's noise, seeded by the row), then encoded. Flux models
        only (the shipped one is).

        The galaxy keeps the stamp's flux and size and is the same every time for the same row.
        Like ``RealGalaxy`` it has the catalog's PSF divided out by default
        (``psf_mode="deconvolve"`` with ``original_psf`` that galaxy's PSF from the catalog,
        convolved with the stamp's pixel where the stamp is coarser than the catalog image);
        ``psf_mode="keep"`` keeps the HST PSF in. The catalog row is in ``galaxy.index``, its
        ``IDENT`` in ``galaxy.ident``.

        Parameters:
            real_galaxy_catalog: a ``galsim.RealGalaxyCatalog`` (or the proxy GalSim's config
                gives each process).
            index: the row. Exactly one of ``index``, ``id`` and ``random`` is given.
            id: the object's ``IDENT`` in the catalog.
            random: a row drawn with ``rng``, as ``RealGalaxy`` draws one. [default: False]
            rng: a ``galsim.BaseDeviate`` (or an int seed) for ``random``. [default: None]
            model: :class:`VAEModel` or weights file; the shipped model when None.
            **kwargs: ``refine`` and ``noise_sigma`` (:meth:`from_image`), or passed to the
                constructor (``flux``, ``psf_mode``, ``original_psf``, ``gsparams``...).
        """
        cat = real_galaxy_catalog
        if not all(hasattr(cat, a) for a in ("getGalImage", "getPSF", "getNoise", "nobjects")):
            raise TypeError(
                f"real_galaxy_catalog must be a galsim.RealGalaxyCatalog, got {type(cat).__name__}"
            )
        given = [k for k, v in (("index", index), ("id", id)) if v is not None]
        given += ["random"] if random else []
        if len(given) != 1:
            raise GalSimIncompatibleValuesError(
                "Exactly one of index, id and random is required", index=index, id=id, random=random
            )
        cat = _local_catalog(cat)
        if id is not None:
            index = cat.getIndexForID(id)
        elif random:  # GalSim's draw: uniform, then kept with the probability of its weight
            ud = galsim.UniformDeviate(as_deviate(rng))
            index = int(cat.nobjects * ud())
            if cat.weight is not None:
                while ud() > cat.weight[index]:
                    index = int(cat.nobjects * ud())
        index = int(index)
        if not 0 <= index < cat.nobjects:
            raise GalSimRangeError("index out of the catalog's range", index, 0, cat.nobjects - 1)
        m = model if isinstance(model, VAEModel) else get_model(model)
        if m.representation != "flux":
            raise GalSimValueError(
                "from_real needs a flux model (a galaxy's size is its stamp's scale); a min-max "
                "model takes its own 64x64 stamps at its scale (from_image)",
                m.representation,
            )
        image = cat.getGalImage(index)
        pad = galsim.BaseDeviate(item_seed(DEFAULT_SEED, index))
        arr, scale = image_stamp(
            image, stamp_size=m.stamp_size, noise=cat.getNoise(index, rng=pad), rng=pad
        )
        kwargs.setdefault("psf_mode", "deconvolve")
        if kwargs["psf_mode"] == "deconvolve" and kwargs.get("original_psf") is None:
            gsp = kwargs.get("gsparams")
            psf = cat.getPSF(index, gsparams=gsp)
            if scale > image.scale * (1 + 1e-9):  # resampling's pixel too
                psf = galsim.Convolve(psf, galsim.Pixel(scale, gsparams=gsp), gsparams=gsp)
            kwargs["original_psf"] = psf
        gal = cls.from_image(galsim.Image(arr, scale=scale), m, **kwargs)
        gal.index = index
        gal.ident = cat.ident[index]
        return gal

    # ---- the profile --------------------------------------------------------------------
    @property
    def model_file(self):
        """File name of the model that decodes this galaxy."""
        return self._model_file

    @property
    def pixel_scale(self):
        """Pixel scale (arcsec) of the decoded stamp: the model's, or the galaxy's own (a flux
        model's galaxies are drawn at their own scales: this is their size)."""
        return self._pixel_scale

    @property
    def original_psf(self):
        """The PSF divided out in ``"deconvolve"`` mode: :func:`hst_f814w_psf`, and for a stamp
        coarser than the HST 0.03"/px also the stamp's pixel, which resampling added."""
        if self._original_psf is not None:
            return self._original_psf
        psf = hst_f814w_psf(self._gsparams)
        if self._pixel_scale > HST_PIXEL_SCALE * (1 + 1e-9):
            pix = galsim.Pixel(self._pixel_scale, gsparams=self._gsparams)
            psf = galsim.Convolve(psf, pix, gsparams=self._gsparams)
        return psf

    @lazy_property
    def _stamp(self):
        return get_model(self._model_file).decode(np.array(self.latent))[0]

    @property
    def _drawable(self):
        """False for a flux model's galaxy whose decoded stamp has no positive flux (a latent
        far outside the training set): it cannot be scaled to a flux."""
        if self._representation != "flux":
            return True
        return bool(float(self._stamp.sum()) > 0.1 * self._stamp.shape[-1])

    @lazy_property
    def stamp(self):
        """The decoded stamp in flux units, with zero sky, as a ``galsim.Image``."""
        if self._representation == "flux":
            # Scaled to its flux exactly (a decoded stamp sums to about S, not exactly).
            total = float(self._stamp.sum())
            if not self._drawable:
                raise GalSimValueError(
                    "The decoded galaxy has no positive flux: its latent lies far outside the "
                    "model's training set",
                    total,
                )
            f = self._median_flux if self._flux_in is None else self._flux_in
            arr = self._stamp * (f / total)
            return galsim.Image(np.ascontiguousarray(arr), scale=self._pixel_scale)
        if self._norm is not None:
            lo, hi = self._norm
        else:  # the median constants: the decoded sky is not zero
            m = get_model(self._model_file)
            (lo,), (hi,) = m.sky_free_constants(
                np.array(self.latent)[None], decoded=self._stamp[None]
            )
        arr = lo + self._stamp * (hi - lo)
        return galsim.Image(np.ascontiguousarray(arr), scale=self._pixel_scale)

    @lazy_property
    def border_sky(self):
        """The sky left in the decoded stamp as a fraction of the galaxy's flux: the median of
        the stamp's 4-pixel border times its number of pixels, over its sum (as the population
        study measures pedestals); NaN for a stamp without positive flux."""
        if not self._drawable:
            return float("nan")
        a = self.stamp.array
        total = float(a.sum())
        if not total > 0:
            return float("nan")
        return border_sky(a) / total

    @property
    def negative_light(self):
        """The light the decoded stamp has below zero (the sum of its negative pixels, made
        positive) as a fraction of its sum: none for a noiseless galaxy, a decoder's ringing and
        mottled floors have it; NaN for a stamp without positive flux."""
        if not self._drawable:
            return float("nan")
        return negative_light(self.stamp.array)

    @lazy_property
    def half_light_radius(self):
        """Half-light radius of the decoded stamp (arcsec, about the stamp centre, interpolated
        between pixels: :func:`galsim_vae.stamp.half_light_radius`), PSF included as the stamp
        has it (``psf_mode`` aside); NaN for a stamp without positive flux."""
        if not self._drawable:
            return float("nan")
        return half_light_radius(self.stamp)

    @lazy_property
    def _profile(self):
        ii = galsim.InterpolatedImage(
            self.stamp,
            x_interpolant=self._x_interpolant,
            k_interpolant=self._k_interpolant,
            pad_factor=self._pad_factor,
            use_true_center=False,
            gsparams=self._gsparams,
        )
        if self._flux_in is not None:
            ii = ii.withFlux(self._flux_in)
        if self.psf_mode == "deconvolve":
            inv = galsim.Deconvolve(self.original_psf, gsparams=self._gsparams)
            return galsim.Convolve(ii, inv, gsparams=self._gsparams)
        return ii

    @property
    def _is_analytic_x(self):
        return self.psf_mode == "keep"

    @property
    def _maxk(self):
        return self._profile._maxk

    @property
    def _stepk(self):
        return self._profile._stepk

    @property
    def _centroid(self):
        return self._profile._centroid

    @property
    def _flux(self):
        return self._profile._flux

    @property
    def _positive_flux(self):
        return self._profile._positive_flux

    @property
    def _negative_flux(self):
        return self._profile._negative_flux

    @lazy_property
    def _flux_per_photon(self):
        return self._calculate_flux_per_photon()

    @property
    def _max_sb(self):
        return self._profile._max_sb

    @property
    def _sbp(self):
        # GalSim's real-space convolution works on the C++ profile.
        return self._profile._sbp

    def _xValue(self, pos):
        return self._profile._xValue(pos)

    def _kValue(self, kpos):
        return self._profile._kValue(kpos)

    def _drawReal(self, image, jac=None, offset=(0.0, 0.0), flux_scaling=1.0):
        self._profile._drawReal(image, jac, offset, flux_scaling)

    def _shoot(self, photons, rng):
        self._profile._shoot(photons, rng)

    def _drawKImage(self, image, jac=None):
        self._profile._drawKImage(image, jac)

    # ---- GSObject plumbing --------------------------------------------------------------
    def withGSParams(self, gsparams=None, **kwargs):
        if gsparams == self.gsparams and not kwargs:
            return self
        ret = self._copy()
        ret._gsparams = galsim.GSParams.check(gsparams, self.gsparams, **kwargs)
        return ret

    def withFlux(self, flux):
        # A new VAEGalaxy (not a Transformation) keeps it a VAEGalaxy, with its decoded stamp.
        if not np.isfinite(flux):
            raise GalSimValueError("flux must be finite", flux)
        ret = self._copy()
        ret._flux_in = float(flux)
        if self._representation == "flux":  # a flux model's stamp is scaled to its flux
            ret.__dict__.pop("stamp", None)
        return ret

    def _copy(self):
        # Not copy.copy: that goes through __getstate__, which drops the decoded stamp.
        ret = self.__class__.__new__(self.__class__)
        ret.__dict__.update(self.__dict__)
        ret.__dict__.pop("_profile", None)
        return ret

    def _key(self):
        return (
            self.latent,
            self._model_file,
            self._flux_in,
            self._norm,
            self.psf_mode,
            self._original_psf,
            self._x_interpolant,
            self._k_interpolant,
            self._pad_factor,
            self._gsparams,
            self._scale_in,
        )

    def __eq__(self, other):
        return self is other or (isinstance(other, VAEGalaxy) and self._key() == other._key())

    def __hash__(self):
        return hash(
            ("galsim_vae.VAEGalaxy",)
            + tuple(repr(k) if isinstance(k, GSObject) else k for k in self._key())
        )

    def __repr__(self):
        s = f"galsim_vae.VAEGalaxy({list(self.latent)!r}, model={self._model_file!r}"
        if self._flux_in is not None:
            s += f", flux={self._flux_in!r}"
        if self._norm is not None:
            s += f", norm_min={self._norm[0]!r}, norm_max={self._norm[1]!r}"
        if self.psf_mode != "keep":
            s += f", psf_mode={self.psf_mode!r}"
        if self._original_psf is not None:
            s += f", original_psf={self._original_psf!r}"
        if self._x_interpolant is not None:
            s += f", x_interpolant={self._x_interpolant!r}"
        if self._k_interpolant is not None:
            s += f", k_interpolant={self._k_interpolant!r}"
        if self._pad_factor != 4:
            s += f", pad_factor={self._pad_factor!r}"
        if self._scale_in is not None:
            s += f", pixel_scale={self._scale_in!r}"
        return s + f", gsparams={self._gsparams!r})"

    def __str__(self):
        return f"galsim_vae.VAEGalaxy(<{len(self.latent)} latents>, flux={self.flux:.6g})"

    def __getstate__(self):
        d = self.__dict__.copy()
        for k in ("_stamp", "stamp", "_profile", "_flux_per_photon", "half_light_radius"):
            d.pop(k, None)
        return d

    def __setstate__(self, d):
        self.__dict__ = d
