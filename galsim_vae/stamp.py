"""The stamp the model sees: checks, the border frame, and the two normalisations.

A stamp is a square array of pixels in flux units with the galaxy centre on pixel ``(S/2, S/2)``
(0-based), its sky subtracted (COSMOS stamps are; simulated ones have zero-mean noise). The
networks see it in one of two representations (:data:`REPRESENTATIONS`):

- ``"minmax"`` (the paper's): scaled to [0, 1] by ``(I - min(I)) / (max(I) - min(I))``; ``min``
  and ``max`` are kept per stamp so that :func:`denormalize` returns a stamp to flux units. The
  zero of the sky then depends on each stamp's constants, which a sampled latent does not have.
- ``"flux"``: divided by its flux, ``I * S / sum(I)`` (:func:`flux_normalize`), so every stamp
  sums to ``S`` and zero stays zero: a decoded stamp has no sky of its own, whatever its flux.
"""

from __future__ import annotations

import galsim
import numpy as np

from .errors import GalSimValueError

__all__ = [
    "REPRESENTATIONS",
    "check_stamps",
    "border_pixels",
    "border_sky",
    "negative_light",
    "normalize",
    "denormalize",
    "flux_normalize",
    "flux_denormalize",
    "half_light_radius",
    "image_stamp",
    "centre_shift",
    "copy_shift",
    "postage_stamp_profile",
]

#: The stamp representations a model can be trained on.
REPRESENTATIONS = ("minmax", "flux")


def check_stamps(
    images, *, size=None, multiple=1, min_size=1, single=False, dtype=np.float64
) -> np.ndarray:
    """Validate stamps and return them as a stack ``(N, S, S)`` of ``dtype`` (float64).

    One 2-D stamp becomes a stack of one; ``(N, 1, S, S)`` (a channel axis) is accepted.

    Parameters:
        images: one stamp ``(S, S)`` or a stack, array-like or ``galsim.Image``.
        size: the side ``S`` the stamps must have. [default: None, any]
        multiple: the side must be a multiple of this. [default: 1]
        min_size: the smallest side allowed. [default: 1]
        single: only one 2-D stamp is accepted. [default: False]
        dtype: the returned stack's type (no copy when the input has it). [default: float64]

    Raises:
        GalSimValueError: not square, wrong side, NaN or infinite pixels.
    """
    x = np.asarray(getattr(images, "array", images), dtype=dtype)
    if single and x.ndim != 2:
        raise GalSimValueError("A stamp must be a 2-D array", x.shape)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1] != x.shape[2] or (size is not None and x.shape[1] != size):
        side = "square" if size is None else f"{size}x{size}"
        raise GalSimValueError(f"Stamps must be {side}: (S, S) or (N, S, S)", x.shape)
    s = x.shape[1]
    if s % multiple or s < min_size:
        raise GalSimValueError(
            f"Stamp side must be a multiple of {multiple} and at least {min_size} pixels", x.shape
        )
    if not np.all(np.isfinite(x)):
        raise GalSimValueError(
            "Stamps contain NaN or infinite pixels", int(np.sum(~np.isfinite(x)))
        )
    return x


def border_pixels(image, width=4):
    """The pixels of the ``width``-pixel frame around a stamp, as one flat array."""
    a = np.asarray(getattr(image, "array", image))
    w = int(width)
    return np.concatenate(
        [a[:w].ravel(), a[-w:].ravel(), a[w:-w, :w].ravel(), a[w:-w, -w:].ravel()]
    )


def border_noise(images, block=8):
    """A noise sigma of each stamp from its border: the median of the standard deviations of the
    ``block`` x ``block`` blocks along its edge. One stamp gives a float, a stack an array. The
    dataset pipeline's estimate (the paper's) takes the smallest of those, which reads low; the
    median is robust to the few blocks a galaxy's wings reach. For stamps that come without a
    sigma."""
    a = np.asarray(getattr(images, "array", images), dtype=float)
    flat = a.reshape(-1, *a.shape[-2:])
    n, s = flat.shape[1] // block, flat.shape[1]
    if n < 2 or s % block:
        raise GalSimValueError(f"border_noise needs a stamp side that is a multiple of {block}", s)
    b = flat[:, : n * block, : n * block].reshape(len(flat), n, block, n, block)
    std = b.std(axis=(2, 4))  # (N, n, n)
    ring = np.zeros((n, n), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    out = np.median(std[:, ring], axis=1)
    return float(out[0]) if a.ndim == 2 else out


def border_sky(image, width=4):
    """The sky a stamp carries, in its own units: the median of its ``width``-pixel border frame
    spread over all its pixels. Over the stamp's sum it is the pedestal measure of the population
    study and of ``VAEGalaxy.sample``'s ``max_border_sky`` guard."""
    a = np.asarray(getattr(image, "array", image))
    return float(np.median(border_pixels(a, width))) * a.size


def negative_light(images):
    """The light a stamp has below zero (the sum of its negative pixels, made positive) over its
    sum; a noiseless galaxy has none, a decoder's ringing and mottled floors do. One stamp gives a
    float, a stack ``(N, S, S)`` an array; NaN where the sum is not positive."""
    a = np.asarray(getattr(images, "array", images), dtype=float)
    neg = -np.clip(a, None, 0).sum(axis=(-2, -1))
    total = a.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(total > 0, neg / total, np.nan)
    return float(out) if out.ndim == 0 else out


def normalize(images):
    """Scale each stamp to [0, 1] by ``(I - min) / (max - min)``.

    Parameters:
        images: one stamp ``(S, S)`` or a stack ``(N, S, S)``.

    Returns:
        tuple: ``(normalized, vmin, vmax)``; for a stack ``vmin`` and ``vmax`` have one value per
        stamp, for one stamp they are floats.
    """
    single = np.ndim(getattr(images, "array", images)) == 2
    arr = check_stamps(images)
    vmin = arr.min(axis=(1, 2))
    vmax = arr.max(axis=(1, 2))
    span = vmax - vmin
    if np.any(span <= 0):
        raise GalSimValueError("Cannot normalise a constant stamp", np.flatnonzero(span <= 0))
    out = (arr - vmin[:, None, None]) / span[:, None, None]
    if single:
        return out[0], float(vmin[0]), float(vmax[0])
    return out, vmin, vmax


def denormalize(normalized, vmin, vmax):
    """Undo :func:`normalize`: ``I = vmin + normalized * (vmax - vmin)``, per stamp."""
    arr = np.asarray(normalized, dtype=np.float64)
    vmin = np.asarray(vmin, dtype=np.float64)
    vmax = np.asarray(vmax, dtype=np.float64)
    if arr.ndim == 3:
        vmin = vmin.reshape(-1, 1, 1)
        vmax = vmax.reshape(-1, 1, 1)
    return vmin + arr * (vmax - vmin)


def flux_normalize(images):
    """Divide each stamp by its flux: ``I * S / sum(I)`` (the ``"flux"`` representation).

    Parameters:
        images: one stamp ``(S, S)`` or a stack ``(N, S, S)``, sky-subtracted, flux units.

    Returns:
        tuple: ``(normalized, flux)``; ``flux`` is ``sum(I)`` per stamp (a float for one stamp).

    Raises:
        GalSimValueError: a stamp whose flux is not positive (no galaxy to normalise).
    """
    single = np.ndim(getattr(images, "array", images)) == 2
    arr = check_stamps(images)
    flux = arr.sum(axis=(1, 2))
    if np.any(~(flux > 0)):
        raise GalSimValueError(
            "Cannot flux-normalise a stamp whose flux is not positive", np.flatnonzero(~(flux > 0))
        )
    out = arr * (arr.shape[1] / flux[:, None, None])
    if single:
        return out[0], float(flux[0])
    return out, flux


def flux_denormalize(normalized, flux):
    """Undo :func:`flux_normalize`: ``I = normalized * flux / S``, per stamp."""
    arr = np.asarray(normalized, dtype=np.float64)
    f = np.asarray(flux, dtype=np.float64)
    if arr.ndim == 3:
        f = f.reshape(-1, 1, 1)
    return arr * f / arr.shape[-1]


def half_light_radius(image, *, center=None) -> float:
    """Half-light radius (arcsec) of a stamp about its centre, interpolated between pixels.

    The radius (pixel centres' distances, times the scale) at which the flux of the pixels
    nearer the centre reaches half the stamp's sum, interpolated linearly between the two
    pixels that straddle the half (``galsim.Image.calculateHLR`` returns the radius of a whole
    pixel: steps of 5-15% for galaxies of 0.1"-0.2" at 0.03"/px).

    Parameters:
        image: a ``galsim.Image`` with a pixel scale.
        center: the centre, a ``galsim.PositionD`` in the image's coordinates. [default: None,
            the nominal centre, pixel ``(S/2, S/2)`` 0-based, the profile's origin]

    Returns:
        float: the radius; NaN when the stamp's sum is not positive.
    """
    arr = np.asarray(image.array, dtype=float)
    total = arr.sum()
    if not total > 0:
        return float("nan")
    if center is None:
        center = image.bounds.center
    b = image.bounds
    y, x = np.mgrid[b.ymin : b.ymax + 1, b.xmin : b.xmax + 1]
    r = np.hypot(x - center.x, y - center.y).ravel() * image.scale
    # The flux inside each distinct pixel radius (pixels at one radius count together), and
    # the half crossed between two radii: each ring's pixels stand for the annulus up to the
    # next radius, so the enclosed flux is interpolated at the ring midpoints.
    radii, inverse = np.unique(np.round(r, 12), return_inverse=True)
    ring = np.bincount(inverse.ravel(), weights=arr.ravel())
    cum = np.cumsum(ring)
    edges = np.append(0.5 * (radii[:-1] + radii[1:]), radii[-1])
    k = int(np.searchsorted(cum, 0.5 * total))
    if k >= len(edges):
        return float(edges[-1])
    lo_r, lo_c = (0.0, 0.0) if k == 0 else (edges[k - 1], cum[k - 1])
    w = (0.5 * total - lo_c) / (cum[k] - lo_c) if cum[k] > lo_c else 0.0
    return float(lo_r + w * (edges[k] - lo_r))


#: Default seed of the noise that pads a catalog's stamps (``galsim-vae dataset``, ``encode``,
#: :meth:`galsim_vae.VAEGalaxy.from_real`): item ``i`` is padded with ``item_seed(seed, i)``.
DEFAULT_SEED = 1234


#: Largest shift (native pixels, each axis) by which :func:`postage_stamp_profile` moves a postage
#: stamp's pixels to bring the galaxy's centroid to the new stamp's centre (:func:`centre_shift`);
#: a centroid found further out (a neighbour, a blend) leaves the stamp unshifted.
MAX_CENTRE_SHIFT = 3


def centre_shift(image, stamp_size=None):
    """The integer shift ``(dx, dy)`` (pixels) from a postage stamp's nominal centre to its pixel
    nearest the galaxy's adaptive-moment centroid; ``(0, 0)`` where the moments fail or the
    centroid lies more than :data:`MAX_CENTRE_SHIFT` pixels from the centre in either axis (a
    neighbour, a blend). With ``stamp_size``, an axis along which the postage stamp fits in the
    new stamp moves at most as far as keeps all of it inside."""
    try:
        c = image.FindAdaptiveMom(strict=True).moments_centroid - image.center
    except galsim.GalSimHSMError:
        return 0, 0
    if not max(abs(c.x), abs(c.y)) <= MAX_CENTRE_SHIFT:
        return 0, 0
    shift = [int(np.round(c.x)), int(np.round(c.y))]
    if stamp_size is not None:
        ny, nx = image.array.shape
        for i, n in enumerate((nx, ny)):
            if n <= stamp_size:  # pixel j lands on stamp_size // 2 + j - (n // 2 + d)
                lo = n - n // 2 - (stamp_size - stamp_size // 2)
                hi = stamp_size // 2 - n // 2
                shift[i] = min(max(shift[i], lo), hi)
    return shift[0], shift[1]


def copy_shift(image, scale, stamp_size):
    """The shift of :func:`centre_shift` where a stamp of ``scale`` copies the postage stamp's
    pixels (its own scale); ``(0, 0)`` at any other scale, where the stamp is resampled anyway,
    about the nominal centre."""
    native = float(image.scale)
    return centre_shift(image, stamp_size) if abs(scale - native) <= 1e-9 * native else (0, 0)


def postage_stamp_profile(image, *, noise, pad, rng, shift=None):
    """A postage stamp as a profile to redraw it on another grid, its pixels kept as observed.

    The profile's origin is the postage stamp's pixel nearest the galaxy's adaptive-moment
    centroid (:func:`centre_shift`). Drawn at the postage stamp's own scale with
    ``use_true_center=False``, every pixel of the new stamp is then one of the observed pixels,
    not an interpolation between them: an even-sided postage stamp centred on its true centre
    would land half a pixel off the new grid in both axes, and quintic interpolation there
    smooths the galaxy and lowers the noise per pixel by ~15% (its border noise would read
    0.00165 counts/s where the COSMOS noise added the same way to a simulated stamp reads
    0.0019-0.0020). Where the new pixels are larger the profile is integrated over them, as the
    simulator resamples its coarser stamps.

    Parameters:
        image: ``galsim.Image`` with a pixel scale, sky subtracted.
        noise: the padding noise (a ``galsim.BaseNoise`` or a variance), as
            ``InterpolatedImage(noise_pad=...)`` takes it.
        pad: side of the padded region, arcsec.
        rng: ``galsim.BaseDeviate`` of the padding.
        shift: the ``(dx, dy)`` of :func:`centre_shift`, when the caller has it. [default: None,
            measured here]

    Returns:
        galsim.InterpolatedImage
    """
    dx, dy = centre_shift(image) if shift is None else shift
    return galsim.InterpolatedImage(
        image,
        x_interpolant="quintic",
        noise_pad=noise,
        noise_pad_size=pad,
        rng=rng,
        use_true_center=False,
        offset=galsim.PositionD(dx, dy),
    )


def image_stamp(image, *, stamp_size=64, noise=None, rng=None):
    """A postage stamp of any size redrawn as a ``stamp_size`` square stamp, as
    :func:`galsim_vae.pipeline.stamps.real_stamp` redraws a catalog's stamps in ``"fit"`` mode: at
    the image's own scale when it fits, else at the coarser scale where it does (Eq. 1), padded
    with noise where the new stamp extends past the image.

    Parameters:
        image: ``galsim.Image`` with a pixel scale, galaxy at its centre, sky subtracted.
        stamp_size: side of the stamp in pixels. [default: 64]
        noise: the image's noise (a ``galsim.BaseNoise``, e.g. ``RealGalaxyCatalog.getNoise``)
            for the padding; white noise at the variance of the image's 2-pixel border when None.
            [default: None]
        rng: ``galsim.BaseDeviate`` of the padding. [default: None, a fixed seed]

    Returns:
        tuple: ``(stamp, scale)``: the float32 ``(stamp_size, stamp_size)`` array and its pixel
        scale (arcsec).
    """
    if not isinstance(image, galsim.Image) or image.scale is None:
        raise GalSimValueError("image_stamp takes a galsim.Image with a pixel scale", image)
    arr = image.array
    if arr.ndim != 2 or min(arr.shape) < 8 or not np.all(np.isfinite(arr)):
        raise GalSimValueError("image must be a finite 2-D image of at least 8x8 pixels", arr.shape)
    if isinstance(stamp_size, bool) or not isinstance(stamp_size, (int, np.integer)):
        raise TypeError(f"stamp_size must be an int, got {stamp_size!r}")
    native = float(image.scale)
    # The paper's Eq. 1, never finer than the image's own pixels.
    scale = max(native, native * max(arr.shape) / (stamp_size - 2))
    rng = galsim.BaseDeviate(1) if rng is None else rng  # 0 would seed from the clock
    if noise is None:
        border = np.concatenate(
            [arr[:2].ravel(), arr[-2:].ravel(), arr[:, :2].ravel(), arr[:, -2:].ravel()]
        )
        mad = 1.4826 * np.median(np.abs(border - np.median(border)))
        noise = max(float(mad) ** 2, 1e-30)  # a variance: white noise
    shift = copy_shift(image, scale, stamp_size)  # a coarser stamp holds the whole image
    prof = postage_stamp_profile(
        image, noise=noise, pad=1.5 * stamp_size * scale, rng=rng, shift=shift
    )
    # Interpolated where the new pixels are not larger; integrated over them where they are.
    method = "no_pixel" if scale <= native * (1 + 1e-9) else "auto"
    stamp = prof.drawImage(
        nx=stamp_size, ny=stamp_size, scale=scale, method=method, use_true_center=False
    )
    return stamp.array.astype(np.float32), float(scale)
