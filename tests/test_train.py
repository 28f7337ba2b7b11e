import json

import numpy as np
import pytest
import torch

from galsim_vae.checkpoint import load_vae
from galsim_vae.cli import main
from galsim_vae.errors import GalSimValueError
from galsim_vae.nn import build_vae
from galsim_vae.pipeline.dataset import StampDataset
from galsim_vae.training.loop import TrainConfig, augment_batch, check_images, train
from galsim_vae.training.losses import VAELoss


@pytest.fixture
def data(sim_dataset):
    tr = StampDataset(sim_dataset, "train").tensor()[:48]
    va = StampDataset(sim_dataset, "valid").tensor()[:16]
    return tr, va


def _model():
    torch.manual_seed(0)
    return build_vae("tiny")


def test_training_lowers_the_loss_and_writes_files(data, tmp_path):
    tr, va = data
    cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, seed=1)
    hist = train(
        _model(), tr, va, loss=VAELoss("beta"), out_dir=tmp_path, config=cfg, progress=False
    )
    assert len(hist) == 4
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    for f in ("best.safetensors", "last.safetensors", "last.state.pt", "history.json"):
        assert (tmp_path / f).is_file()
    assert json.loads((tmp_path / "history.json").read_text()) == hist
    _, meta = load_vae(tmp_path / "last.safetensors")
    assert meta["epoch"] == "4"


def test_resume_equals_uninterrupted(data, tmp_path):
    tr, va = data
    cfg = TrainConfig(epochs=3, batch_size=16, seed=5)
    full = train(
        _model(), tr, va, loss=VAELoss("beta"), out_dir=tmp_path / "a", config=cfg, progress=False
    )
    # Interrupted after 2 epochs (a run whose config stops there), then resumed.
    train(
        _model(),
        tr,
        va,
        loss=VAELoss("beta"),
        out_dir=tmp_path / "b",
        config=TrainConfig(epochs=2, batch_size=16, seed=5),
        progress=False,
    )
    resumed = train(
        build_vae("tiny"),
        tr,
        va,
        loss=VAELoss("beta"),
        out_dir=tmp_path / "b",
        config=cfg,
        progress=False,
    )
    assert len(resumed) == 3
    np.testing.assert_allclose(
        [h["valid_loss"] for h in resumed], [h["valid_loss"] for h in full], rtol=1e-5
    )
    a, _ = load_vae(tmp_path / "a" / "last.safetensors")
    b, _ = load_vae(tmp_path / "b" / "last.safetensors")
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_resume_refuses_what_it_cannot_continue(data, tmp_path):
    from galsim_vae.checkpoint import load_training_state, save_training_state
    from galsim_vae.errors import GalSimIncompatibleValuesError

    tr, va = data
    cfg = TrainConfig(epochs=2, batch_size=16, seed=5)
    run = tmp_path / "run"
    train(_model(), tr, va, loss=VAELoss("beta"), out_dir=run, config=cfg, progress=False)
    best = (run / "best.safetensors").read_bytes()
    more = TrainConfig(epochs=3, batch_size=16, seed=5)
    # Another loss, or other data, would mix two runs' losses: refused, naming the difference.
    with pytest.raises(GalSimIncompatibleValuesError, match="loss: beta -> original"):
        train(_model(), tr, va, loss=VAELoss("original"), out_dir=run, config=more)
    with pytest.raises(GalSimIncompatibleValuesError, match="n_train: 48 -> 32"):
        train(_model(), tr[:32], va, loss=VAELoss("beta"), out_dir=run, config=more)
    # A kill between the weights and the state of an older run (no weights in its state): the
    # epochs differ, and it is refused rather than resumed from mismatched halves.
    st = load_training_state(run / "last.state.pt")
    old = {k: v for k, v in st.items() if k not in ("model", "identity")}
    save_training_state(run / "last.state.pt", {**old, "epoch": 1})
    with pytest.raises(GalSimValueError, match="interrupted"):
        train(_model(), tr, va, loss=VAELoss("beta"), out_dir=run, config=more, progress=False)
    # Weights without a state: never trained over (its best.safetensors kept), nor with
    # resume off.
    (run / "last.state.pt").unlink()
    for resume in (True, False):
        with pytest.raises(GalSimValueError, match="holds another run"):
            train(_model(), tr, va, loss=VAELoss("beta"), out_dir=run, config=more, resume=resume)
    assert (run / "best.safetensors").read_bytes() == best
    # A run killed during its first epoch has its epoch-0 state: it resumes from the start.
    fresh = tmp_path / "fresh"
    cfg0 = TrainConfig(epochs=0, batch_size=16, seed=5)
    assert train(_model(), tr, va, loss=VAELoss("beta"), out_dir=fresh, config=cfg0) == []
    assert (fresh / "last.state.pt").is_file() and not (fresh / "last.safetensors").exists()
    hist = train(_model(), tr, va, loss=VAELoss("beta"), out_dir=fresh, config=cfg, progress=False)
    assert len(hist) == 2


def test_same_seed_same_weights(data, tmp_path):
    tr, va = data
    cfg = TrainConfig(epochs=1, batch_size=16, seed=2)
    for d in ("a", "b"):
        train(
            _model(),
            tr,
            va,
            loss=VAELoss("flow", 8.0),
            out_dir=tmp_path / d,
            config=cfg,
            progress=False,
        )
    a, _ = load_vae(tmp_path / "a" / "last.safetensors")
    b, _ = load_vae(tmp_path / "b" / "last.safetensors")
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(x, y)


def test_augment_keeps_centre_pixel():
    x = torch.zeros(16, 1, 64, 64)
    x[:, :, 32, 32] = 1.0
    x[:, :, 32, 40] = 0.5  # off-centre marker moves
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.all(out[:, :, 32, 32] == 1.0)
    assert len({tuple(torch.nonzero(o[0] == 0.5)[0].tolist()) for o in out}) > 1


def test_bad_images():
    with pytest.raises(TypeError):
        check_images(np.zeros((2, 1, 8, 8)))
    with pytest.raises(GalSimValueError, match="shape"):
        check_images(torch.zeros(2, 3, 8, 8))
    with pytest.raises(GalSimValueError, match="NaN"):
        check_images(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(GalSimValueError, match=r"\[0, 1\]"):
        check_images(torch.full((2, 1, 8, 8), 2.0))


def test_train_cli(sim_dataset, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        str(sim_dataset),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--batch-size",
        "32",
        "--quiet",
        "--epochs",
    ]
    assert main(args + ["1"]) == 0
    assert (out / "learning_curve.png").is_file() and (out / "best.safetensors").is_file()
    # Rerunning with more epochs resumes from epoch 1.
    assert main(args + ["2"]) == 0
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]


def test_gauss_training_on_flux_stamps(sim_dataset, tmp_path):
    import dataclasses

    from galsim_vae.nn import PRESETS

    tr = StampDataset(sim_dataset, "train", "flux")
    va = StampDataset(sim_dataset, "valid", "flux")
    # Flux-normalised stamps sum to S, and their sigma is the noise scaled as the stamp was.
    np.testing.assert_allclose(tr.images.sum(axis=(1, 2)), 64, rtol=1e-4)
    np.testing.assert_allclose(
        tr.sigma, np.asarray(tr.table["noise_sigma"]) * 64 / tr.flux, rtol=1e-5
    )
    torch.manual_seed(0)
    model = build_vae(dataclasses.replace(PRESETS["tiny"], output="linear"))
    cfg = TrainConfig(epochs=3, batch_size=16, lr=3e-3, seed=1)
    kw = dict(out_dir=tmp_path, config=cfg, progress=False, loss=VAELoss("gauss"))
    sig = (tr.sigma_tensor()[:48], va.sigma_tensor()[:16])
    hist = train(
        model, tr.tensor()[:48], va.tensor()[:16], train_sigma=sig[0], valid_sigma=sig[1], **kw
    )
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert "valid_chi2" in hist[0] and "valid_bce" not in hist[0]
    _, meta = load_vae(tmp_path / "best.safetensors")
    assert meta["representation"] == "flux" and meta["loss"] == "gauss"
    # The loss needs the noise, and a decoder that can leave [0, 1].
    with pytest.raises(GalSimValueError, match="noise sigma"):
        train(
            build_vae(dataclasses.replace(PRESETS["tiny"], output="linear")),
            tr.tensor()[:48],
            va.tensor()[:16],
            **dict(kw, out_dir=tmp_path / "x"),
        )
    with pytest.raises(GalSimValueError, match="linear or softmax output"):
        train(
            _model(),
            tr.tensor()[:48],
            va.tensor()[:16],
            train_sigma=sig[0],
            valid_sigma=sig[1],
            **dict(kw, out_dir=tmp_path / "y"),
        )


def _flux_model():
    import dataclasses

    from galsim_vae.nn import PRESETS

    torch.manual_seed(0)
    return build_vae(dataclasses.replace(PRESETS["tiny"], output="linear"))


def test_truth_target(sim_dataset, tmp_path):
    from galsim_vae.errors import GalSimIncompatibleValuesError
    from galsim_vae.pipeline.dataset import read_dataset, read_truths, select_split
    from galsim_vae.training.loop import evaluate_loss

    tr = StampDataset(sim_dataset, "train", "flux", truth=True)
    va = StampDataset(sim_dataset, "valid", "flux", truth=True)
    # The truths are scaled by their noisy stamp's flux, as the stamps are.
    _, table, _, _ = read_dataset(sim_dataset)
    rows = np.flatnonzero(select_split(table, "train"))
    raw = read_truths(sim_dataset)[rows]
    assert tr.truth.shape == tr.images.shape
    np.testing.assert_allclose(
        tr.truth * tr.flux[:, None, None] / 64, raw, rtol=1e-4, atol=1e-6 * np.abs(raw).max()
    )
    # The stamps carry noise, their truths do not.
    assert np.abs(tr.images - tr.truth).max() > 0
    sig = (tr.sigma_tensor()[:48], va.sigma_tensor()[:16])
    kw = dict(config=TrainConfig(epochs=2, batch_size=16, lr=3e-3, seed=1), progress=False)
    kw.update(train_sigma=sig[0], valid_sigma=sig[1])
    x, v = tr.tensor()[:48], va.tensor()[:16]
    tt, vt = tr.truth_tensor()[:48], va.truth_tensor()[:16]
    seen = []

    class Spy(VAELoss):  # records what each training batch is compared with, and its sigma
        def __call__(self, recon, target, mu, logvar, sigma=None):
            seen.append((target.detach().flatten(1).sum(1), sigma))
            return super().__call__(recon, target, mu, logvar, sigma)

    mt = _flux_model()
    hist = train(
        mt,
        x,
        v,
        out_dir=tmp_path / "t",
        loss=Spy("gauss"),
        train_target=tt,
        valid_target=vt,
        **kw,
    )
    # Every stamp is compared with its own truth (turned: the same sum), found by its noise
    # sigma (one per stamp); none with a stamp (sum 64).
    sums, sigmas = (torch.cat(v) for v in zip(*seen))
    assert len(sums) == 2 * 48 and len(set(sig[0].tolist())) == 48
    row = torch.argmin(torch.abs(sigmas[:, None] - sig[0][None]), dim=1)
    torch.testing.assert_close(sums, tt.flatten(1).sum(1)[row], rtol=1e-5, atol=1e-4)
    assert not bool((torch.abs(sums - 64) < 1e-3).any())
    kw["loss"] = VAELoss("gauss")
    # The validation loss is measured against the target too: the truth's chi2 lacks the noise.
    ev_t = evaluate_loss(mt, v, kw["loss"], sigma=sig[1], target=vt)
    ev_s = evaluate_loss(mt, v, kw["loss"], sigma=sig[1])
    assert hist[-1]["valid_chi2"] == pytest.approx(ev_t["chi2"], rel=1e-5)
    assert ev_s["chi2"] - ev_t["chi2"] > 0.5
    _, meta = load_vae(tmp_path / "t" / "best.safetensors")
    assert json.loads(meta["target"]) == "truth"
    # A run with the truth target is another run: resuming it without the target is refused.
    with pytest.raises(GalSimIncompatibleValuesError, match="target"):
        train(_flux_model(), x, v, out_dir=tmp_path / "t", **dict(kw, config=TrainConfig(3)))
    # Both targets or neither; the right shape; the gauss loss only.
    with pytest.raises(GalSimValueError, match="both"):
        train(_flux_model(), x, v, out_dir=tmp_path / "a", train_target=tt, **kw)
    with pytest.raises(GalSimValueError, match="shape"):
        train(
            _flux_model(),
            x,
            v,
            out_dir=tmp_path / "b",
            train_target=tt[:5],
            valid_target=vt,
            **kw,
        )
    # A stamp and its target are turned together.
    g = torch.Generator().manual_seed(3)
    both = augment_batch(torch.cat([x[:8], x[:8]], 1), g)
    assert torch.equal(both[:, :1], both[:, 1:]) and not torch.equal(both[:, :1], x[:8])


def test_truth_target_cli(sim_dataset, real_dataset, tmp_path, capsys):
    args = ["train", "--preset", "tiny", "--batch-size", "32", "--quiet", "--epochs", "1"]
    args += ["--loss", "gauss", "--target", "truth"]
    assert main(args + [str(sim_dataset), "--out", str(tmp_path / "r")]) == 0
    _, meta = load_vae(tmp_path / "r" / "best.safetensors")
    assert json.loads(meta["target"]) == "truth"
    capsys.readouterr()
    # Real stamps have no truth; the paper's losses take none.
    assert main(args + [str(real_dataset), "--out", str(tmp_path / "s")]) == 2
    assert "no noiseless truths" in capsys.readouterr().err
    beta = args[:-4] + ["--target", "truth", str(sim_dataset), "--out", str(tmp_path / "u")]
    assert main(beta) == 2
    assert "needs --loss gauss" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "u").exists()


def test_floor_term_cli(sim_dataset, tmp_path, capsys):
    # --floor compares with the truths: refused against the noisy stamps, recorded with them,
    # and a resume with another weight would mix two runs.
    args = ["train", "--preset", "tiny", "--batch-size", "32", "--quiet", "--epochs", "1"]
    args += ["--loss", "gauss", str(sim_dataset)]
    assert main(args + ["--out", str(tmp_path / "n"), "--floor", "10"]) == 2
    assert "--target truth" in capsys.readouterr().err and not (tmp_path / "n").exists()
    run = ["--target", "truth", "--out", str(tmp_path / "f")]
    assert main(args + run + ["--floor", "10"]) == 0
    hist = json.loads((tmp_path / "f" / "history.json").read_text())
    assert hist[0]["valid_floor"] > 0
    _, meta = load_vae(tmp_path / "f" / "best.safetensors")
    assert json.loads(meta["floor"]) == 10.0
    capsys.readouterr()
    assert main(args + run + ["--floor", "3", "--epochs", "2"]) == 2
    assert "floor" in capsys.readouterr().err
