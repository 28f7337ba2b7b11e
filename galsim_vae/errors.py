"""The error classes raised by galsim_vae.

galsim_vae raises GalSim's own error classes so that code catching ``galsim.GalSimError`` catches
ours too. Which one to raise:

- :class:`GalSimValueError`: a value that is not allowed (a missing file, a latent with NaNs, an
  unknown loss name). The bad value is the second argument.
- :class:`GalSimRangeError`: a number outside its allowed range (stamp size, pixel scale).
- :class:`GalSimIncompatibleValuesError`: arguments that cannot be used together.
- :class:`GalSimConfigError` / :class:`GalSimConfigValueError`: bad keys or values in a GalSim
  config dictionary or YAML file.
- :class:`GalSimNotImplementedError`: an option we know of but do not offer.
- ``TypeError``: an argument of the wrong type.

All of them keep their arguments, so they pickle (they cross process boundaries in
``nproc > 1`` config runs and in Dask workers).
"""

from galsim.errors import (
    GalSimConfigError,
    GalSimConfigValueError,
    GalSimError,
    GalSimIncompatibleValuesError,
    GalSimIndexError,
    GalSimKeyError,
    GalSimNotImplementedError,
    GalSimRangeError,
    GalSimValueError,
    GalSimWarning,
)

__all__ = [
    "GalSimError",
    "GalSimValueError",
    "GalSimRangeError",
    "GalSimKeyError",
    "GalSimIndexError",
    "GalSimIncompatibleValuesError",
    "GalSimConfigError",
    "GalSimConfigValueError",
    "GalSimNotImplementedError",
    "GalSimWarning",
]
