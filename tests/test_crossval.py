import json

import galsim
import numpy as np
import pytest

from galsim_vae.studies.crossval import augment_real, crossval_real, helps


def test_augment_real_keeps_the_galaxy_and_renews_the_noise():
    g = galsim.Exponential(half_light_radius=6.0, flux=100.0).shear(q=0.4, beta=20 * galsim.degrees)
    clean = g.drawImage(nx=64, ny=64, scale=1.0, method="no_pixel").array
    rng = np.random.default_rng(1)
    sigma = 0.01
    noisy = clean + rng.normal(0, sigma, clean.shape)
    out, sig = augment_real(noisy[None], [sigma], 12, rng)
    assert out.shape == (12, 64, 64) and out.dtype == np.float32
    # Flux kept (up to the wings the dilation moves across the border and the noise)...
    np.testing.assert_allclose(out.sum(axis=(1, 2)), clean.sum(), rtol=0.05)
    # ... the noise everywhere, corners brought in by the rotation included, at most the sigma
    # the copy reports: the stamp's (less after interpolation, which smooths it) plus half of it
    # again. Corners left empty by the rotation would hold only the added half (0.45 of it).
    np.testing.assert_allclose(sig, sigma * np.sqrt(1.25))
    for a in out:
        for corner in (a[:8, :8], a[:8, -8:], a[-8:, :8], a[-8:, -8:]):
            assert 0.55 * sig[0] < corner.std() < 1.1 * sig[0]
    # ... and each copy turned: the position angles spread, the ellipticity stays.
    shapes = [galsim.hsm.FindAdaptiveMom(galsim.Image(a.astype(float))).observed_shape for a in out]
    e = np.array([s.e for s in shapes])
    beta = np.array([s.beta.deg for s in shapes])
    e0 = galsim.hsm.FindAdaptiveMom(galsim.Image(clean)).observed_shape.e
    np.testing.assert_allclose(e, e0, atol=0.06)
    assert np.ptp(beta) > 60


@pytest.fixture(scope="module")
def cv(real_dataset, sim_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv")
    kw = dict(folds=2, epochs=1, copies=1, n_sim=40, max_real=8, progress=False)
    return out, kw, crossval_real(real_dataset, sim_dataset, out, **kw)


def test_crossval_holds_each_galaxy_out_once(cv, real_dataset):
    from galsim_vae import get_model
    from galsim_vae.pipeline.dataset import read_dataset
    from galsim_vae.studies.analysis import chi2_per_pixel

    out, _, res = cv
    folds = [json.loads((out / f"fold{k}" / "fold.json").read_text()) for k in range(2)]
    held = sorted(i for f in folds for i in f["held"])
    images, table, _, _ = read_dataset(real_dataset)
    passing = np.flatnonzero(np.asarray(table["passes"], dtype=bool))[:8]
    assert held == passing.tolist()  # every galaxy held out once, none twice
    # Each fold's model is trained on the other fold's galaxies only, from the shipped weights.
    from galsim_vae.checkpoint import read_metadata

    for f in folds:
        assert f["n_train_real"] == 8 - len(f["held"])
        assert len(json.loads((out / f"fold{f['fold']}" / "history.json").read_text())) == 1
        # What the fine-tuning was given: one augmented copy of each of the other fold's
        # galaxies (copies=1), started from the shipped weights.
        meta = read_metadata(out / f"fold{f['fold']}" / "last.safetensors")
        ds = json.loads(meta["dataset"])
        assert ds["n_real_augmented"] == f["n_train_real"]
        assert json.loads(meta["init_sha256"]) == get_model().metadata["sha256"]
    # The starting model's chi2 is the shipped model's reconstruction of the held galaxies.
    m = get_model()
    x = images[folds[0]["held"]].astype(float)
    sig = np.asarray(table["noise_sigma"], dtype=float)[folds[0]["held"]]
    np.testing.assert_allclose(folds[0]["chi2_base"], chi2_per_pixel(m.reconstruct(x), x, sig))
    assert res["pooled"]["all"]["n"] == 8
    assert res["fine_tuning_helps"] == helps(res["pooled"]["brighter_half"])
    assert (out / "crossval.md").read_text().count("| 0 |") == 1


def test_crossval_verdict_needs_the_median_and_most_galaxies():
    # A median that falls while most galaxies get worse is not a gain.
    b = {"median_chi2_base": 2.094, "median_chi2_tuned": 2.070, "tuned_better_than_base": 0.26}
    assert not helps(b)
    assert helps({**b, "tuned_better_than_base": 0.6})
    assert not helps({**b, "median_chi2_tuned": 2.1, "tuned_better_than_base": 0.6})


def test_crossval_resumes_and_refuses_another_runs_folds(cv, real_dataset, sim_dataset):
    out, kw, res = cv
    stamp = (out / "fold0" / "fold.json").stat().st_mtime_ns
    again = crossval_real(real_dataset, sim_dataset, out, **kw)
    assert (out / "fold0" / "fold.json").stat().st_mtime_ns == stamp  # not trained again
    assert again["pooled"] == res["pooled"]
    with pytest.raises(galsim.GalSimValueError, match="another cross-validation"):
        crossval_real(real_dataset, sim_dataset, out, **dict(kw, lr=1e-3))
