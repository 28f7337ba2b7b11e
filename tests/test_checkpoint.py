import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from galsim_vae import checkpoint
from galsim_vae.errors import GalSimValueError
from galsim_vae.nn import PRESETS, build_vae


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    m = build_vae("tiny")
    path = checkpoint.save_vae(
        tmp_path / "m.safetensors",
        m,
        pixel_scale=0.03,
        loss="beta",
        loss_param=0.01,
        epoch=3,
        dataset={"n_train": 10},
    )
    return m, path


def test_round_trip(tiny):
    m, path = tiny
    m2, meta = checkpoint.load_vae(path)
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(a, b)
    assert meta["loss"] == "beta" and float(meta["loss_param"]) == 0.01
    assert meta["epoch"] == "3" and meta["latent_dim"] == "8" and meta["stamp_size"] == "64"
    assert float(meta["pixel_scale"]) == 0.03 and "minmax" in meta["normalisation"]
    m.eval()
    x = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(m(x)[0], m2(x)[0])


def test_tampered_truncated_and_foreign_files(tiny, tmp_path):
    m, path = tiny
    tensors = load_file(str(path))
    meta = checkpoint.read_metadata(path)
    k = next(iter(tensors))
    tensors[k] = tensors[k] + 1
    bad = tmp_path / "tampered.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(GalSimValueError, match="checksum"):
        checkpoint.load_vae(bad)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(GalSimValueError, match="truncated|corrupt|readable"):
        checkpoint.load_vae(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(GalSimValueError, match="readable"):
        checkpoint.load_vae(junk)
    other = tmp_path / "other.safetensors"
    save_file({"a": torch.zeros(2)}, str(other), metadata={"format": "something"})
    with pytest.raises(GalSimValueError, match="Not a galsim_vae model"):
        checkpoint.load_vae(other)
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(str(path)), str(newer), metadata=dict(meta, format_version="99"))
    with pytest.raises(GalSimValueError, match="version 99"):
        checkpoint.load_vae(newer)
    with pytest.raises(GalSimValueError, match="not found"):
        checkpoint.load_vae(tmp_path / "none.safetensors")


def test_other_architecture_is_refused(tiny):
    _, path = tiny
    with pytest.raises(GalSimValueError, match="differs"):
        checkpoint.load_vae(path, config=PRESETS["compact"])
    cfg = dataclasses.replace(PRESETS["tiny"], name="renamed")
    assert checkpoint.load_vae(path, config=cfg)[0].config == cfg  # the name is informational


def _run_code(marker):
    """What unpickling a malicious file would run: here, it only writes ``marker``."""
    Path(marker).write_text("code ran")


class _Payload:
    """An object whose unpickling calls :func:`_run_code` (a global no weights-only load allows)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_run_code, (self.marker,))


def _legit_state():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.01)
    p.sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    return {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": torch.Generator().manual_seed(5).get_state(),
        "history": '[{"epoch": 1}]',
        "best": 0.5,
        "bad": 1,
        "epoch": 2,
    }


def test_training_state_round_trip(tmp_path):
    state = _legit_state()
    p = checkpoint.save_training_state(tmp_path / "s.pt", state)
    st = checkpoint.load_training_state(p)
    assert st["epoch"] == 2 and st["best"] == 0.5 and st["history"] == state["history"]
    assert torch.equal(st["generator"], state["generator"])
    exp_avg = st["optimizer"]["state"][0]["exp_avg"]
    torch.testing.assert_close(exp_avg, state["optimizer"]["state"][0]["exp_avg"])
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=1.0)
    opt.load_state_dict(st["optimizer"])
    assert opt.param_groups[0]["lr"] == 0.01
    with pytest.raises(GalSimValueError, match="Cannot read training state"):
        checkpoint.load_training_state(tmp_path / "missing.pt")


@pytest.fixture
def malicious(tmp_path):
    """A .pt file whose unpickling would run code (checked once with a full, unsafe load)."""
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pt"
    torch.save(dict(_legit_state(), extra=_Payload(marker)), path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"
    marker.unlink()
    return path, marker


def test_training_state_never_runs_pickled_code(malicious):
    path, marker = malicious
    with pytest.raises(GalSimValueError, match="(?i)training state"):
        checkpoint.load_training_state(path)
    assert not marker.exists()


def test_metadata_is_checksummed(tiny, tmp_path):
    # One changed byte in the metadata (pixel_scale 0.03 -> 0.05: galaxies 1.67x larger) is
    # refused, as one in the tensors is.
    _, path = tiny
    data = bytearray(path.read_bytes())
    i = data.find(b'"pixel_scale":"0.03"')
    assert i > 0
    data[i + len(b'"pixel_scale":"0.0')] = ord("5")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(GalSimValueError, match="metadata checksum"):
        checkpoint.load_vae(bad)
    assert checkpoint.read_metadata(path)["meta_sha256"] == checkpoint.meta_checksum(
        checkpoint.read_metadata(path)
    )


def test_weights_are_written_readable(tiny):
    import os
    import stat

    _, path = tiny
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
