"""The data pipeline: COSMOS catalogs and the simulator to dataset files, and catalog encoding.

Not imported by ``import galsim_vae`` (a GalSim YAML worker needs only the core); import it as
``galsim_vae.pipeline``.

- :mod:`.stamps`: COSMOS ``RealGalaxyCatalog`` galaxies to 64x64 stamps (:func:`real_stamps`);
- :mod:`.metrics`: noise, SNR, Width, NonUniformity and the quality cuts (:class:`QualityCuts`);
- :mod:`.simulator`: COSMOS-like simulated stamps (:class:`COSMOSLikeSimulator`, :func:`simulate`);
- :mod:`.dataset`: the dataset file, its splits and a torch ``Dataset`` (:class:`StampDataset`);
- :mod:`.cosmos`: a whole COSMOS download to a dataset file, streamed and resumable
  (:func:`build_dataset`);
- :mod:`.standin`: a format-exact stand-in of GalSim's COSMOS 25.2 download (:func:`build_standin`);
- :mod:`.encode`: every stamp of a catalog to latents, locally or on Dask
  (:func:`encode_catalog`).
"""

from .cosmos import build_dataset
from .dataset import (
    StampDataset,
    dataset_summary,
    read_dataset,
    select_split,
    write_dataset,
    write_dataset_parts,
)
from .encode import encode_catalog, encode_stamps
from .metrics import QualityCuts, stamp_metrics
from .simulator import COSMOSLikeSimulator, find_shared_data, simulate
from .stamps import find_catalog, open_catalog, real_stamp, real_stamps
from .standin import build_standin

__all__ = [
    "QualityCuts",
    "stamp_metrics",
    "find_catalog",
    "open_catalog",
    "real_stamp",
    "real_stamps",
    "COSMOSLikeSimulator",
    "find_shared_data",
    "simulate",
    "StampDataset",
    "read_dataset",
    "write_dataset",
    "write_dataset_parts",
    "build_dataset",
    "build_standin",
    "select_split",
    "dataset_summary",
    "encode_catalog",
    "encode_stamps",
]
