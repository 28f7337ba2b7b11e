import galsim
import numpy as np
import pytest

from galsim_vae import AttributeModel, hst_f814w_psf
from galsim_vae.cli import main
from galsim_vae.studies import attribute_fit
from galsim_vae.studies.attribute_fit import measure_sersic


def test_measure_sersic_recovers_a_known_profile():
    psf = hst_f814w_psf()
    truth = [(0.25, 1.0, 0.5, 30.0), (0.15, 3.0, 0.8, 120.0)]
    stamps = []
    for hlr, n, q, pa in truth:
        gal = galsim.Sersic(n=n, half_light_radius=hlr, flux=50.0)
        gal = gal.shear(q=q, beta=pa * galsim.degrees)
        img = galsim.Convolve(gal, psf).drawImage(nx=64, ny=64, scale=0.03, method="no_pixel")
        stamps.append(img.array)
    got = measure_sersic(np.array(stamps))
    for i, (hlr, n, q, pa) in enumerate(truth):
        assert got["half_light_radius"][i] == pytest.approx(hlr, rel=0.05)
        assert got["sersic_n"][i] == pytest.approx(n, rel=0.15)
        assert got["axis_ratio"][i] == pytest.approx(q, abs=0.05)
        assert got["position_angle"][i] == pytest.approx(pa, abs=3.0)
    with pytest.raises(galsim.GalSimValueError, match="N, S, S"):
        measure_sersic(np.zeros((64, 64)))


def test_measure_sersic_gives_nan_for_stamps_it_cannot_fit():
    # A decoded stamp with a non-finite pixel, or values that overflow the fit's residuals, is
    # measured as NaN (or fitted), never an exception that stops a whole attribute fit.
    good = (
        galsim.Exponential(half_light_radius=0.2, flux=100.0)
        .drawImage(nx=64, ny=64, scale=0.03, method="no_pixel")
        .array
    )
    bad = good.copy()
    bad[3, 3] = np.inf
    huge = good * np.float32(1e30)
    res = measure_sersic(np.array([good, bad, huge]), scale=0.03)
    assert np.isfinite(res["half_light_radius"][0])
    assert np.isnan(res["half_light_radius"][1])
    assert np.isnan(res["half_light_radius"][2]) or np.isfinite(res["half_light_radius"][2])


def test_training_measurements_resume_after_interruption(tmp_path, monkeypatch):
    calls = []

    def fake_measure(stamps, **kwargs):
        calls.append(len(stamps))
        v = stamps.sum(axis=(1, 2)).astype(float)
        return {k: v for k in ("half_light_radius", "sersic_n", "axis_ratio", "position_angle")}

    monkeypatch.setattr(attribute_fit, "measure_sersic", fake_measure)
    x = np.arange(5 * 4).reshape(5, 2, 2).astype(float)
    ident = np.array(["a", "b", "c", "d", "e"])
    path = tmp_path / "measurements.npz"
    first = attribute_fit._measure_resumable(x[:3], ident[:3], path, block=2)  # "interrupted"
    assert calls == [2, 1] and len(first["sersic_n"]) == 3
    calls.clear()
    out = attribute_fit._measure_resumable(x, ident, path, block=2)
    assert calls == [2]  # only the two stamps not yet measured
    np.testing.assert_array_equal(out["sersic_n"], x.sum(axis=(1, 2)))
    calls.clear()
    attribute_fit._measure_resumable(x, np.array(list("vwxyz")), path, block=2)  # other rows
    assert calls == [2, 2, 1]


def test_fit_attributes_command(sim_dataset, tmp_path):
    # The whole job on small data: Sersic fits of the training stamps (saved for resuming),
    # the three perceptrons, the report and the model file.
    out = tmp_path / "attr.npz"
    report = tmp_path / "report"
    argv = ["fit-attributes", str(sim_dataset), "--out", str(out), "--report", str(report)]
    argv += ["--max-rows", "40", "--n-per", "2", "--neighbours", "8", "--nproc", "1", "--quiet"]
    assert main(argv) == 0
    am = AttributeModel.load(out)
    assert am.meta["n_rows"] < 40 and am.k == 8
    meas = np.load(report / "measurements.npz")
    assert len(meas["index"]) == 40
    rep = __import__("json").loads((report / "attributes.json").read_text())
    # Six sizes across the training range, and a flux model's two ends of its accepted range.
    n_sizes = 8 if am.scale_model else 6
    assert len(rep["size_measured_median"]) == len(rep["size_requested"]) == n_sizes
    assert 0 <= rep["n_undrawable"] <= rep["n_generated"]
    assert all(v > 0 for v in rep["size_measured_median"])
    assert (report / "attributes.png").is_file()
    # The inverse model reads sizes back from the latents of the training stamps' own galaxies.
    assert abs(rep["inverse_hlr_bias"]) < 0.5
    z = am.sample(np.zeros(3), np.full(3, np.median(am.a["hlr_range"])), np.full(3, 0.6), 1)
    assert z.shape == (3, 64) and np.all(np.isfinite(z))


def test_fit_attributes_refuses_a_real_dataset(real_dataset, tmp_path, capsys):
    argv = ["fit-attributes", str(real_dataset), "--out", str(tmp_path / "a.npz"), "--quiet"]
    assert main(argv) == 2
    assert "bulge_fraction" in capsys.readouterr().err
    assert not (tmp_path / "a.npz").exists()
