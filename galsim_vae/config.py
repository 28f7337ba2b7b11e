"""GalSim config registrations: ``modules: [galsim_vae]`` in a YAML file is all a user writes.

Input type ``vae_model``
    Optional keys ``file_name`` (a weights file; the shipped model when absent) and
    ``latent_file`` (a FITS table with a ``mu`` column, as ``galsim-vae encode`` writes, or a
    ``.npy`` array of latents) for ``index``-based galaxies. Rows that ``encode`` flagged
    (missing or corrupt stamps: a true ``flag`` column) are left out, and ``index`` counts the
    rows kept; the table's normalisation columns (``norm_min``/``norm_max``, or ``flux`` for a
    flux model) give each galaxy the flux of the stamp it was encoded from. Without this input
    the shipped model is used. Each process loads the model once.

Object type ``VAEGalaxy``
    Keys are the constructor's: exactly one of ``latent`` (a list of numbers, or a ``$``
    expression or ``Eval`` giving one), ``index`` (a row
    of the input's ``latent_file``), a galaxy of a ``real_catalog`` input chosen as
    ``RealGalaxy`` chooses one (``id``, ``random: True``, or ``index`` when no ``latent_file``
    is given: :meth:`VAEGalaxy.from_real`), ``sampling`` (``density`` or ``prior``; the
    default when none is given) or attributes (``hubble_type`` and ``half_light_radius``, optional
    ``axis_ratio`` and ``position_angle`` in degrees, random when absent, and ``out_of_range``,
    ``clip`` (the default: a size outside the model's range is clipped to it, with a warning) or
    ``raise``; any of them may be a GalSim value type), plus ``flux``, ``norm_min``,
    ``norm_max``, ``pixel_scale``, ``psf_mode`` and ``pad_factor``; a ``real_catalog`` galaxy
    also takes ``refine`` (steps of :meth:`VAEModel.refine_latents` from the encoder's mean;
    0, the default, keeps the mean). Transformations
    (``shear``, ``rotate``, ``magnify``, ``shift``, ...) and ``gsparams`` are GalSim's own.
    Random latents come from the object's rng, so ``image.random_seed`` fixes them; a flux
    model's joint density gives each sampled galaxy its pixel scale and flux too, at a COSMOS
    F814W magnitude, or at ``magnitude`` (F814W AB; sampled galaxies only) when given, or at the
    magnitude of a COSMOS galaxy at ``redshift`` (:meth:`VAEGalaxy.sample`'s ``redshift``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import galsim
import numpy as np
from galsim.config import (
    GetAllParams,
    GetInputObj,
    GetRNG,
    InputLoader,
    RegisterInputType,
    RegisterObjectType,
    SetDefaultIndex,
)

from .errors import GalSimConfigError, GalSimConfigValueError
from .galaxy import MAX_BORDER_SKY, MAX_NEGATIVE_LIGHT, PSF_MODES, VAEGalaxy
from .model import get_model

__all__ = ["VAEModelInput"]

#: Warnings given once per process (a config run builds its objects one at a time).
_WARNED: dict = {}


class VAEModelInput:
    """The ``vae_model`` config input: a model (shared per process) and optional latents.

    Parameters:
        file_name: weights file; the shipped model when None. [default: None]
        latent_file: FITS table with a ``mu`` column, or ``.npy`` array ``(N, latent_dim)``.
            [default: None]
    """

    _req_params = {}
    _opt_params = {"file_name": str, "latent_file": str}
    _single_params = []
    _takes_rng = False

    def __init__(self, file_name=None, latent_file=None):
        self.file_name = file_name
        self.latent_file = latent_file
        self._load()

    def _load(self):
        try:
            self.model = get_model(self.file_name)
        except galsim.GalSimError as e:
            raise GalSimConfigValueError(f"vae_model: {e}", self.file_name) from e
        self.latents, self.constants = None, {}
        if self.latent_file is not None:
            p = Path(self.latent_file)
            if not p.is_file():
                raise GalSimConfigValueError("vae_model latent_file not found", str(p))
            self.constants = {}
            if p.suffix == ".npy":
                z = np.load(p, allow_pickle=False)
            else:
                from astropy.table import Table

                t = Table.read(p)
                if "mu" not in t.colnames:
                    raise GalSimConfigValueError("latent_file has no 'mu' column", str(p))
                if "flag" in t.colnames:  # rows encode could not encode: left out
                    t = t[~np.asarray(t["flag"], dtype=bool)]
                z = np.asarray(t["mu"], dtype=float)
                flux_model = self.model.representation == "flux"
                keys = ("flux", "pixel_scale") if flux_model else ("norm_min", "norm_max")
                self.constants = {k: np.asarray(t[k], dtype=float) for k in keys if k in t.colnames}
            try:
                self.latents = self.model._check_latents(z)
            except galsim.GalSimError as e:
                raise GalSimConfigValueError(f"vae_model latent_file {p}: {e}", str(p)) from e

    def getNObjects(self):
        return 0 if self.latents is None else len(self.latents)

    # Pickled as its arguments: each worker process reloads (once) from the files.
    def __getstate__(self):
        return {"file_name": self.file_name, "latent_file": self.latent_file}

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._load()


def _get_input(config, base):
    if "vae_model" in base.get("input", {}):
        return GetInputObj("vae_model", config, base, "VAEGalaxy")
    return VAEModelInput()


def _BuildVAEGalaxy(config, base, ignore, gsparams, logger):
    """Build a VAEGalaxy from a config dict."""
    inp = _get_input(config, base)
    # A galaxy of a real_catalog input (encoded, as the model sees it) when chosen by id, or by
    # index where no latent file is given.
    real = "id" in config or (
        ("index" in config or config.get("random") is True)
        and inp.latents is None
        and "real_catalog" in base.get("input", {})
    )
    if "index" in config and (inp.latents is not None or real):
        # As GalSim's catalog types: a Sequence or Random index without limits runs over the
        # rows of the latent file or catalog (a Sequence wraps round).
        n = (
            GetInputObj("real_catalog", config, base, "VAEGalaxy").nobjects
            if real
            else len(inp.latents)
        )
        SetDefaultIndex(config, n)
    latent = config.get("latent")
    kwargs, safe = GetAllParams(
        config,
        base,
        VAEGalaxy._req_params,
        VAEGalaxy._opt_params,
        VAEGalaxy._single_params,
        ignore=ignore + ["latent"],
    )
    if kwargs.get("random") and not real:
        raise GalSimConfigError("VAEGalaxy random: True picks a galaxy of input.real_catalog")
    for key in ("max_border_sky", "max_negative_light"):
        if key in kwargs and real:
            raise GalSimConfigError(f"VAEGalaxy {key} goes with sampled galaxies, not real ones")
    if "refine" in kwargs and not real:
        raise GalSimConfigError("VAEGalaxy refine goes with a galaxy of input.real_catalog")
    if real:
        return _build_real(config, base, kwargs, safe, gsparams, logger, inp)
    kwargs.pop("random", None)  # random: False, as GalSim allows beside an index
    attrs = {
        k: kwargs.pop(k) for k in ("hubble_type", "half_light_radius", "axis_ratio") if k in kwargs
    }
    magnitude = kwargs.pop("magnitude", None)
    redshift = kwargs.pop("redshift", None)
    guard = {
        "max_border_sky": kwargs.pop("max_border_sky", MAX_BORDER_SKY),
        "max_negative_light": kwargs.pop("max_negative_light", MAX_NEGATIVE_LIGHT),
    }
    for key, limit in guard.items():
        if key in config and (attrs or latent is not None or "index" in kwargs):
            raise GalSimConfigError(
                f"VAEGalaxy {key} goes with sampled galaxies (no latent, index, id or attributes)"
            )
        if limit <= 0:  # a non-positive limit turns that test off, as None does in Python
            guard[key] = None
    if magnitude is not None and (attrs or latent is not None or "index" in kwargs):
        raise GalSimConfigError(
            "VAEGalaxy magnitude goes with sampled galaxies (no latent, index or attributes); "
            "set the flux of others with flux"
        )
    if magnitude is not None and "flux" in kwargs:
        raise GalSimConfigError("VAEGalaxy takes magnitude or flux, not both")
    if redshift is not None and (attrs or latent is not None or "index" in kwargs):
        raise GalSimConfigError(
            "VAEGalaxy redshift goes with sampled galaxies (no latent, index or attributes)"
        )
    if redshift is not None and (magnitude is not None or "flux" in kwargs):
        raise GalSimConfigError("VAEGalaxy takes one of redshift, magnitude and flux")
    position_angle = kwargs.pop("position_angle", None)
    out_of_range = kwargs.pop("out_of_range", "clip")
    if position_angle is not None and not attrs:
        raise GalSimConfigError(
            "VAEGalaxy position_angle goes with the attributes (hubble_type, "
            "half_light_radius); rotate other galaxies with GalSim's rotate"
        )
    given = [k for k in ("index", "sampling") if k in kwargs] + (
        ["latent"] if latent is not None else []
    )
    given += ["attributes"] if attrs else []
    if len(given) > 1:
        raise GalSimConfigError(
            f"VAEGalaxy takes only one of latent, index, sampling, attributes: {given}"
        )
    if attrs:
        if "hubble_type" not in attrs or "half_light_radius" not in attrs:
            raise GalSimConfigError("VAEGalaxy attributes need hubble_type and half_light_radius")
        ht = attrs["hubble_type"]
        try:
            ht = float(ht)
        except ValueError:
            pass
        if gsparams:
            kwargs["gsparams"] = galsim.GSParams(**gsparams)
        rng = GetRNG(config, base, logger, "VAEGalaxy")
        try:
            # One object at a time: the clipping warning once per process, not once a galaxy.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", galsim.GalSimWarning)
                gal = VAEGalaxy.from_attributes(
                    ht,
                    attrs["half_light_radius"],
                    attrs.get("axis_ratio"),
                    position_angle=position_angle,
                    rng=rng,
                    model=inp.model,
                    out_of_range=out_of_range,
                    **kwargs,
                )
        except galsim.GalSimError as e:
            raise GalSimConfigValueError(f"VAEGalaxy attributes: {e}", attrs) from e
        for w in caught:
            if issubclass(w.category, galsim.GalSimWarning) and "clipped" in str(w.message):
                if not _WARNED.get("clipped"):
                    _WARNED["clipped"] = True
                    galsim.errors.galsim_warn(
                        f"VAEGalaxy: {w.message}; further galaxies clipped in this process are "
                        "not reported"
                    )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return gal, False
    if kwargs.get("psf_mode", "keep") not in PSF_MODES:
        raise GalSimConfigValueError(
            "Invalid psf_mode for VAEGalaxy", kwargs["psf_mode"], PSF_MODES
        )
    model = inp.model
    if latent is not None:
        if isinstance(latent, (str, dict)):  # a $/@ expression or an Eval/Current value
            latent, latent_safe = galsim.config.ParseValue(config, "latent", base, list)
            safe = safe and latent_safe
        if not isinstance(latent, (list, tuple, np.ndarray)):
            raise GalSimConfigError(f"VAEGalaxy latent must be a list of numbers, got {latent!r}")
        try:
            z = np.asarray(latent, dtype=float)
        except (TypeError, ValueError):
            raise GalSimConfigValueError(
                "VAEGalaxy latent must be a list of numbers", list(latent)[:4]
            ) from None
    elif "index" in kwargs:
        index = kwargs.pop("index")
        if inp.latents is None:
            raise GalSimConfigError("VAEGalaxy index needs input.vae_model.latent_file")
        if not 0 <= index < len(inp.latents):
            raise GalSimConfigValueError(
                "VAEGalaxy index out of range", index, (0, len(inp.latents) - 1)
            )
        z = inp.latents[index]
        # The row's own constants, unless the config gives them: a min-max galaxy keeps its
        # norm_min/norm_max (its shape and sky depend on them) even when flux= rescales it.
        for k, v in inp.constants.items():
            kwargs.setdefault(k, float(v[index]))
    else:
        sampling = kwargs.pop("sampling", "density")
        if sampling not in ("density", "prior"):
            raise GalSimConfigValueError(
                "Invalid sampling for VAEGalaxy", sampling, ("density", "prior")
            )
        rng = GetRNG(config, base, logger, "VAEGalaxy")
        if gsparams:
            kwargs["gsparams"] = galsim.GSParams(**gsparams)
        # As VAEGalaxy.sample draws them: a latent that decodes to no positive flux, or that
        # the sampling guard refuses (MAX_BORDER_SKY, MAX_NEGATIVE_LIGHT), is drawn again.
        try:
            gal = VAEGalaxy.sample(
                1,
                rng,
                model,
                sampling=sampling,
                magnitude=magnitude,
                redshift=redshift,
                **guard,
                **kwargs,
            )
        except galsim.GalSimError as e:
            if magnitude is None and redshift is None:
                raise
            key, value = ("magnitude", magnitude) if redshift is None else ("redshift", redshift)
            raise GalSimConfigValueError(f"VAEGalaxy {key}: {e}", value) from e
        return gal[0], False
    if z.shape != (model.latent_dim,):
        raise GalSimConfigValueError(
            f"VAEGalaxy latent must have {model.latent_dim} values", z.shape
        )
    if not np.all(np.isfinite(z)):
        raise GalSimConfigValueError("VAEGalaxy latent has NaN or infinite values", list(z))
    if gsparams:
        kwargs["gsparams"] = galsim.GSParams(**gsparams)
    return VAEGalaxy(z, model, **kwargs), safe


def _build_real(config, base, kwargs, safe, gsparams, logger, inp):
    """A VAEGalaxy of the real_catalog input's galaxy (``id`` or ``index``):
    :meth:`VAEGalaxy.from_real`."""
    choosers = ("sampling", "magnitude", "redshift", "hubble_type", "half_light_radius")
    other = [k for k in choosers if k in kwargs]
    pick = [k for k in ("index", "id") if k in kwargs]
    pick += ["random"] if kwargs.get("random") else []
    if "latent" in config or other or len(pick) > 1:
        raise GalSimConfigError(
            "VAEGalaxy takes only one of latent, index, id, random, sampling (or magnitude), "
            "attributes: " + str((["latent"] if "latent" in config else []) + pick + other)
        )
    real_cat = GetInputObj("real_catalog", config, base, "VAEGalaxy")
    if gsparams:
        kwargs["gsparams"] = galsim.GSParams(**gsparams)
    for k in ("axis_ratio", "position_angle", "out_of_range", "norm_min", "norm_max"):
        if k in kwargs:
            raise GalSimConfigError(f"VAEGalaxy {k} does not go with a real_catalog galaxy")
    rng = GetRNG(config, base, logger, "VAEGalaxy")
    index, ident = kwargs.pop("index", None), kwargs.pop("id", None)
    random = kwargs.pop("random", False)
    try:
        gal = VAEGalaxy.from_real(
            real_cat, index=index, id=ident, random=random, rng=rng, model=inp.model, **kwargs
        )
    except galsim.GalSimError as e:
        raise GalSimConfigError(f"VAEGalaxy of the real_catalog: {e}") from e
    return gal, safe and not random


RegisterInputType("vae_model", InputLoader(VAEModelInput, use_proxy=False, has_nobj=True))
# Connected to both inputs, so that GalSim rebuilds a galaxy when either is reloaded.
RegisterObjectType("VAEGalaxy", _BuildVAEGalaxy, input_type=["vae_model", "real_catalog"])
