"""The only module that reads or writes weights.

Weights are safetensors files (no code runs when they are read) whose metadata holds everything
needed to rebuild and trust the network:

``format``           ``galsim_vae.vae``
``format_version``   :data:`FORMAT_VERSION`; a newer one is refused
``library_version``  the galsim_vae version that wrote the file
``architecture``     the :class:`~galsim_vae.nn.VAEConfig` as JSON
``latent_dim``, ``stamp_size``, ``pixel_scale`` (arcsec/px), ``normalisation``
``loss``, ``loss_param``, ``epoch``, ``dataset`` (JSON summary of the training data)
``sha256``           checksum of the tensors (names, dtypes, shapes and bytes, in name order)

plus any extra keys given as JSON. Optimiser, scheduler and random-generator states needed to
resume training live in a separate ``.state.pt`` file, read with ``torch.load(weights_only=True)``.
Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._utils import atomic_path
from ._version import __version__
from .errors import GalSimValueError
from .nn import VAE, VAEConfig
from .stamp import REPRESENTATIONS

_NORMALISATION = {
    "minmax": "minmax: (I - min) / (max - min) per stamp",
    "flux": "flux: I * S / sum(I) per stamp, sky-subtracted",
}

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "checksum",
    "meta_checksum",
    "save_vae",
    "read_metadata",
    "load_state_dict",
    "load_vae",
    "save_training_state",
    "load_training_state",
]

FORMAT = "galsim_vae.vae"
#: Version 2 adds ``meta_sha256``, a checksum of the metadata; version 1 files (no metadata
#: checksum) are still read.
FORMAT_VERSION = 2
_READABLE = (1, 2)


def meta_checksum(meta: dict) -> str:
    """SHA-256 of a weights file's metadata (every key but ``meta_sha256``, in key order)."""
    h = hashlib.sha256()
    for k in sorted(meta):
        if k != "meta_sha256":
            h.update(json.dumps([k, meta[k]]).encode())
    return h.hexdigest()


def checksum(tensors: dict) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and raw bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_vae(
    path,
    model: VAE,
    *,
    pixel_scale: float,
    loss: str,
    loss_param: float,
    epoch: int = 0,
    dataset: dict | None = None,
    extra: dict | None = None,
    representation: str = "minmax",
) -> Path:
    """Write a model's weights and metadata to a safetensors file, atomically.

    ``representation`` is the stamp representation the model was trained on
    (:data:`galsim_vae.stamp.REPRESENTATIONS`).
    """
    if representation not in REPRESENTATIONS:
        raise GalSimValueError("Unknown representation", representation, REPRESENTATIONS)
    cfg = model.config
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "torch_version": torch.__version__,
        "architecture": cfg.to_json(),
        "latent_dim": str(cfg.latent_dim),
        "stamp_size": str(cfg.stamp_size),
        "pixel_scale": repr(float(pixel_scale)),
        "normalisation": _NORMALISATION[representation],
        "representation": representation,
        "loss": loss,
        "loss_param": repr(float(loss_param)),
        "epoch": str(int(epoch)),
        "dataset": json.dumps(dataset or {}, sort_keys=True, default=str),
        "sha256": checksum(tensors),
    }
    for k, v in (extra or {}).items():
        meta[k] = json.dumps(v, default=str)
    meta["meta_sha256"] = meta_checksum(meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path) -> dict:
    """The metadata of a weights file, checked for format and version (tensors not read)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise GalSimValueError("Model file not found", str(p))
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise GalSimValueError(f"Not a readable safetensors model file ({e})", str(p)) from e
    if meta.get("format") != FORMAT:
        raise GalSimValueError("Not a galsim_vae model file", str(p))
    try:
        v = int(meta.get("format_version", -1))
    except ValueError:
        v = -1
    if v not in _READABLE:
        raise GalSimValueError(
            f"Model format version {meta.get('format_version')} is not supported (this "
            f"galsim_vae reads {_READABLE})",
            str(p),
        )
    # The metadata (pixel scale, normalisation, architecture...) says how the weights are used:
    # a changed byte there is as harmful as one in the tensors.
    # Checked whenever present, and required from version 2 on (a file cannot opt out by
    # calling itself version 1).
    if (v >= 2 or "meta_sha256" in meta) and meta.get("meta_sha256") != meta_checksum(meta):
        raise GalSimValueError(
            "Model file metadata checksum mismatch (tampered or corrupt)", str(p)
        )
    return meta


def load_state_dict(path, *, verify: bool = True) -> tuple[dict, dict]:
    """Tensors and metadata of a weights file; the checksum is verified unless ``verify=False``."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise GalSimValueError(f"Model file is truncated or corrupt ({e})", str(path)) from e
    if verify and checksum(tensors) != meta.get("sha256"):
        raise GalSimValueError("Model file checksum mismatch (tampered or corrupt)", str(path))
    return tensors, meta


def load_vae(path, *, config: VAEConfig | None = None) -> tuple[VAE, dict]:
    """Rebuild the network stored in ``path`` and load its weights (eval mode).

    Parameters:
        path: a file written by :func:`save_vae`.
        config: when given, the architecture the caller expects; a file of another architecture
            raises. [default: None]

    Returns:
        tuple: ``(model, metadata)``.
    """
    tensors, meta = load_state_dict(path)
    try:
        cfg = VAEConfig.from_json(meta["architecture"])
        float(meta["pixel_scale"])
        json.loads(meta.get("dataset", "{}") or "{}")
    except (KeyError, ValueError, TypeError) as e:
        raise GalSimValueError(f"Model file metadata is unreadable ({e})", str(path)) from e
    if config is not None and config != cfg:
        raise GalSimValueError(
            f"Checkpoint architecture {cfg} differs from the expected {config}", str(path)
        )
    model = VAE(cfg)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise GalSimValueError(
            f"Weights do not fit the stored architecture ({e})", str(path)
        ) from e
    model.eval()
    return model, meta


def save_training_state(path, state: dict) -> Path:
    """Write optimiser/scheduler/generator state (tensors, numbers, strings) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_training_state(path) -> dict:
    """Read what :func:`save_training_state` wrote (``weights_only=True``: no code runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a global weights_only refuses: not ours, not run
        raise GalSimValueError(
            "Training state holds objects other than tensors, numbers and strings; refused "
            "unread (not written by galsim_vae)",
            str(path),
        ) from e
    except (OSError, RuntimeError, EOFError) as e:
        raise GalSimValueError(f"Cannot read training state ({e})", str(path)) from e
