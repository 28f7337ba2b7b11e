import dataclasses
import json
import shutil
import subprocess
import sys

import galsim
import numpy as np
import pytest
import torch

from galsim_vae.cli import main
from galsim_vae.pipeline.dataset import read_dataset

# -- helpers shared by the test files that check figures or need small files ----------------------
# (imported by test_scene, test_analysis, test_encode, test_config and test_dataset)


def figure_rgb(path):
    """The RGB pixels (floats in [0, 1]) of a PNG figure, checked to be a real, drawn image."""
    from matplotlib.image import imread

    img = imread(str(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    rgb = img[..., :3].astype(float)
    h, w = rgb.shape[:2]
    assert h >= 100 and w >= 100, (h, w)
    # A blank figure, or one whose panels are empty or constant, has few colours and little spread.
    assert rgb.std() > 0.05
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 100
    return rgb


def runs(mask, min_len):
    """``(start, end)`` of the runs of True in a 1-d mask that are at least ``min_len`` long."""
    m = np.concatenate([[0], np.asarray(mask, dtype=int), [0]])
    d = np.diff(m)
    return [
        (int(a), int(b))
        for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True)
        if b - a >= min_len
    ]


def tile_grid(path):
    """``(rows, columns)`` of the grid of image panels (colour-mapped stamps) of a PNG figure.

    A stamp drawn with a colour map (magma) is a block of dark or saturated pixels; axes, text and
    grey histograms are not. Rows and columns of the figure that cross such blocks are counted.
    """
    rgb = figure_rgb(path)
    tile = (np.ptp(rgb, axis=2) > 0.15) | (rgb.max(axis=2) < 0.1)

    def count(frac):
        # Panels are separated by white gaps of ten pixels or more; a few lines through the pale
        # cores of bright galaxies or a pale noisy background (in every panel of a row or
        # column) are not a gap.
        r = runs(frac > 0.25, 1)
        merged = []
        for a, b in r:
            if merged and a - merged[-1][1] <= 5:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return len([1 for a, b in merged if b - a >= 20])

    return count(tile.mean(axis=1)), count(tile.mean(axis=0))


def write_small_dataset(path, n=6, seed=0, psfs=True):
    """A dataset file of ``n`` noisy synthetic galaxies (no real data needed), every row passing."""
    from galsim_vae.pipeline.dataset import write_dataset
    from galsim_vae.pipeline.metrics import QualityCuts, stamp_metrics

    rng = np.random.default_rng(seed)
    psf = galsim.Gaussian(fwhm=0.1)
    images, rows = [], []
    for i in range(n):
        gal = galsim.Exponential(half_light_radius=0.1 + 0.03 * i, flux=50.0).shear(
            g1=0.05 * (i % 3), g2=-0.04 * (i % 2)
        )
        a = galsim.Convolve(gal, psf).drawImage(nx=64, ny=64, scale=0.03, use_true_center=False)
        a = a.array + rng.normal(0, 0.02, (64, 64))
        r = {
            "ident": 100 + i,
            "source": "test",
            "pixel_scale": 0.03,
            "flux": float(a.sum()),
            "flux_total": 50.0,
            "flux_fraction": 1.0,
        }
        r.update(stamp_metrics(a))
        r["width_arcsec"] = r["width_pix"] * 0.03
        images.append(a)
        rows.append(r)
    psf_img = psf.drawImage(nx=64, ny=64, scale=0.03, use_true_center=False).array
    loose = QualityCuts(
        min_snr=0, min_width=0, max_width=np.inf, min_nonuniformity=0, min_flux_fraction=0
    )
    write_dataset(
        path,
        np.array(images),
        rows,
        psfs=np.repeat(psf_img[None], n, axis=0) if psfs else None,
        cuts=loose,
        valid=0,
        test=0,
    )
    return path


def write_tiny_model(path, seed=0):
    """An untrained 'tiny' VAE (8 latents) saved as a weights file; returns its path."""
    import torch

    from galsim_vae import checkpoint
    from galsim_vae.nn import build_vae

    torch.manual_seed(seed)
    return checkpoint.save_vae(
        path, build_vae("tiny"), pixel_scale=0.03, loss="beta", loss_param=0.01
    )


# -- tests -----------------------------------------------------------------------------------------


def test_dataset_command_writes_every_column_and_figure(real_dataset):
    images, table, psfs, hdr = read_dataset(real_dataset)
    assert images.shape == (100, 64, 64) and psfs.shape == (100, 64, 64)
    for col in (
        "ident",
        "source",
        "pixel_scale",
        "flux",
        "flux_fraction",
        "noise_sigma",
        "snr",
        "width_pix",
        "width_arcsec",
        "nonuniformity",
        "norm_min",
        "norm_max",
        "passes",
        "split",
        "psf_index",
    ):
        assert col in table.colnames, col
    assert 10 < table["passes"].sum() < 100
    # The Fig. 2-style figure: one row per metric (4), its 3 lowest and 3 highest stamps.
    assert tile_grid(real_dataset.with_suffix(".png")) == (4, 6)
    np.testing.assert_allclose(table["norm_max"], images.max(axis=(1, 2)), rtol=1e-6)
    assert hdr["SCALEMOD"] == "fixed" and np.all(table["pixel_scale"] == 0.03)


def test_dataset_command_fit_scale_mode(btk_dir, real_dataset, tmp_path):
    out = tmp_path / "fit.fits"
    argv = ["dataset", str(btk_dir), "--out", str(out), "--quiet", "--nproc", "1"]
    assert main([*argv, "--scale-mode", "fit"]) == 0
    images, t, psfs, hdr = read_dataset(out)
    assert hdr["SCALEMOD"] == "fit" and images.shape == (100, 64, 64)
    # The paper's Eq. 1: the original postage stamp's side fills the stamp less one pixel a side.
    np.testing.assert_allclose(t["pixel_scale"], 0.03 * t["original_size"] / (64 - 2), rtol=1e-6)
    assert len(np.unique(t["pixel_scale"])) > 10
    # So each galaxy's whole postage stamp is inside its stamp, and the widths in arcsec do not
    # depend on the mode.
    np.testing.assert_allclose(t["flux_fraction"], 1.0, atol=1e-6)
    _, fixed, _, _ = read_dataset(real_dataset)
    assert fixed["flux_fraction"].min() < 0.9
    assert np.median(t["width_arcsec"] / fixed["width_arcsec"]) == pytest.approx(1, abs=0.02)
    # PSF images are redrawn at each stamp's scale: coarser pixels, sharper peak.
    order = np.argsort(t["pixel_scale"])
    peaks = psfs[np.asarray(t["psf_index"])].max(axis=(1, 2))
    assert peaks[order[-1]] > 5 * peaks[order[0]]


def test_simulate_command(tmp_path, data_dir, real_dataset):
    out = tmp_path / "sim.fits"
    assert (
        main(
            [
                "simulate",
                "--n",
                "24",
                "--out",
                str(out),
                "--seed",
                "2",
                "--quiet",
                "--data-dir",
                str(data_dir),
                "--nproc",
                "1",
                "--min-snr",
                "0",
                "--min-flux-fraction",
                "0",
                "--compare",
                str(real_dataset),
                "--faint-size-slope",
                "0.05",
            ]
        )
        == 0
    )
    assert (tmp_path / "sim_vs_real.png").exists() and (tmp_path / "sim.png").exists()
    images, _, _, header = read_dataset(out)
    assert images.shape == (24, 64, 64) and header["FSLOPE"] == 0.05


def test_fit_density_command(sim_dataset, tmp_path):
    from galsim_vae import LatentDensity, default_model_path, get_model
    from galsim_vae.checkpoint import read_metadata

    n_pass = int(read_dataset(sim_dataset)[1]["passes"].sum())
    out = tmp_path / "d.npz"
    argv = ["fit-density", str(sim_dataset), "--components", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    d = LatentDensity.load(out)
    # The shipped flux model's density is joint: latents, then log flux (the set has one scale).
    assert d.aux_names == ("log10_flux",) and d.latent_dim == 64
    assert d.weights.shape == (2,) and d.means.shape == (2, 65)
    assert d.covariances.shape == (2, 65, 65)
    assert d.meta["model_sha256"] == get_model().metadata["sha256"]
    assert d.meta["n_fit"] == n_pass and d.meta["n_components"] == 2
    assert d.meta["split"] == "passes" and d.meta["dataset"] == sim_dataset.name
    # The COSMOS magnitudes sampled galaxies get by default: a histogram of the catalog.
    edges, counts = d.magnitude_prior
    assert counts.sum() == d.meta["magnitude_prior"]["n"] > 50000 and len(edges) == len(counts) + 1
    assert main([*argv, "--magnitudes", "training", "--out", str(tmp_path / "tr.npz")]) == 0
    assert LatentDensity.load(tmp_path / "tr.npz").magnitude_prior is None
    assert d.redshift_prior is not None
    # Without the fit catalog (photometric redshifts) the magnitudes are kept, with a warning.
    from galsim_vae.pipeline.simulator import find_shared_data

    part = tmp_path / "data" / "cosmos_fits"
    part.mkdir(parents=True)
    (tmp_path / "data" / "cosmos_btk100").mkdir()
    (part / "shera_catalog_23.5.fits.gz").symlink_to(
        find_shared_data() / "cosmos_fits" / "shera_catalog_23.5.fits.gz"
    )
    opts = ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "noz.npz")]
    with pytest.warns(galsim.GalSimWarning, match="no redshifts"):
        assert main([*argv, *opts]) == 0
    noz = LatentDensity.load(tmp_path / "noz.npz")
    assert noz.magnitude_prior is not None and noz.redshift_prior is None
    # The mixture describes the latents it was fitted to far better than the unit prior does.
    mu = get_model().encode(read_dataset(sim_dataset)[0][:20])["mu"]
    prior = -0.5 * (mu**2).sum(axis=1) - 32 * np.log(2 * np.pi)
    assert np.all(d.log_prob(mu) > prior)

    # --model FILE without --out: the density is written beside that file, for that model.
    copy = tmp_path / "copy.safetensors"
    shutil.copy(default_model_path(), copy)
    assert main([*argv, "--model", str(copy)]) == 0
    dc = LatentDensity.load(tmp_path / "copy_density.npz")
    assert dc.meta["model_sha256"] == read_metadata(copy)["sha256"]
    np.testing.assert_allclose(dc.means, d.means)
    # Another architecture's file (8 latents) gives a density of its own latents.
    tiny = write_tiny_model(tmp_path / "tiny.safetensors")
    assert main([*argv, "--model", str(tiny), "--out", str(tmp_path / "t.npz")]) == 0
    dt = LatentDensity.load(tmp_path / "t.npz")
    assert dt.means.shape == (2, 8)
    assert dt.meta["model_sha256"] == read_metadata(tiny)["sha256"] != d.meta["model_sha256"]


def _snr_cut_dataset(sim_dataset, tmp_path):
    """The simulated stamps rewritten with an SNR cut at their median and a width cut at their
    90th percentile (rows below the SNR cut but too wide are not "below the SNR cut alone"),
    and one stamp below the SNR cut with no positive flux (never used). Returns the file, the
    cuts and that stamp's row."""
    from galsim_vae.pipeline.dataset import write_dataset
    from galsim_vae.pipeline.metrics import QualityCuts

    images, table, psfs, header = read_dataset(sim_dataset)
    snr = np.asarray(table["snr"], dtype=float)
    width = np.asarray(table["width_pix"], dtype=float)
    cuts = QualityCuts(
        min_snr=float(np.median(snr)),
        min_width=0,
        max_width=float(np.percentile(width, 90)),
        min_nonuniformity=0,
        min_flux_fraction=0,
    )
    keep = [c for c in table.colnames if c not in ("passes", "split")]
    rows = [dict(zip(keep, r)) for r in table[keep]]
    faint = int(np.argmin(np.where(width <= cuts.max_width, snr, np.inf)))
    images = images.copy()
    images[faint] = -np.abs(images[faint])
    cut = tmp_path / "cut.fits"
    write_dataset(cut, images, rows, psfs=psfs, cuts=cuts, seed=1, valid=0.1, test=0.1)
    return cut, cuts, faint


def test_fit_density_with_the_rows_below_the_snr_cut(sim_dataset, tmp_path):
    from galsim_vae import LatentDensity
    from galsim_vae.pipeline.dataset import (
        MIN_FLUX_SNR,
        cuts_from_header,
        low_snr_rows,
        select_split,
    )

    cut, cuts, faint = _snr_cut_dataset(sim_dataset, tmp_path)
    images, table, _, header = read_dataset(cut)
    assert cuts_from_header(header) == cuts
    low = low_snr_rows(table, header, images)
    passes = np.asarray(table["passes"], dtype=bool)
    assert low.any() and not (low & passes).any()
    by_snr = (np.asarray(table["snr"]) < cuts.min_snr) & (
        np.asarray(table["width_pix"]) <= cuts.max_width
    )
    measured = images.sum(axis=(1, 2)) >= MIN_FLUX_SNR * 64 * np.asarray(table["noise_sigma"])
    np.testing.assert_array_equal(low, by_snr & measured)
    assert (~passes & ~low).any()  # some fail by their width
    assert by_snr[faint] and not low[faint]  # and one below the SNR cut has no flux
    n_train = int(select_split(table, "train").sum())
    argv = ["fit-density", str(cut), "--components", "2", "--split", "train", "--magnitudes"]
    argv += ["training", "--with-low-snr", "--out", str(tmp_path / "d.npz")]
    assert main(argv) == 0
    d = LatentDensity.load(tmp_path / "d.npz")
    n_low = d.meta["n_fit"] - n_train
    # The train split's share of them, drawn as the command does (seed 0).
    u = np.random.default_rng(0).random(int(low.sum()))
    assert n_low == int((u < n_train / passes.sum()).sum()) > 0
    assert f"+ {n_low} rows below" in d.meta["split"]
    # Only those brighter than a magnitude: the added rows fainter than it are left out.
    from galsim_vae.pipeline.dataset import select_with_low_snr
    from galsim_vae.studies.population import magnitudes

    added = select_with_low_snr(table, header, images, "train")[0] & ~select_split(table, "train")
    mag = magnitudes(np.asarray(table["flux_total"], dtype=float))
    limit = float(np.median(mag[added]))
    bright = [*argv[:-1], str(tmp_path / "b.npz"), "--low-snr-brighter-than", str(limit)]
    assert main(bright) == 0
    b = LatentDensity.load(tmp_path / "b.npz")
    assert b.meta["n_fit"] - n_train == int((added & (mag < limit)).sum()) < n_low
    assert f"brighter than F814W {limit:g}" in b.meta["split"]
    no_low = [a for a in bright if a != "--with-low-snr"]
    assert main(no_low) == 2
    # --split all has them already; a file without cut cards says so.
    assert main([*argv[:5], "all", *argv[6:]]) == 2
    for k in [k for k in header if k.startswith("C_")]:
        header.remove(k)
    with pytest.raises(galsim.GalSimValueError, match="no quality cuts"):
        cuts_from_header(header)
    # A log flux range that reaches below the passing rows' faintest.
    faintest_kept = np.log10(images[passes].sum(axis=(1, 2))).min()
    assert d.meta["aux_range"]["log10_flux"][0] < faintest_kept


def test_train_with_the_rows_below_the_snr_cut(sim_dataset, tmp_path, capsys):
    from galsim_vae.checkpoint import read_metadata
    from galsim_vae.pipeline.dataset import low_snr_rows, select_split, select_with_low_snr

    cut, _, _ = _snr_cut_dataset(sim_dataset, tmp_path)
    images, table, _, header = read_dataset(cut)
    low = low_snr_rows(table, header, images)
    masks = {sp: select_with_low_snr(table, header, images, sp) for sp in ("train", "valid")}
    added = {sp: m & low for sp, (m, _) in masks.items()}
    # Each split gains its own low-SNR rows, disjoint, and keeps its passing rows.
    assert added["train"].any() and not (added["train"] & added["valid"]).any()
    for sp, (m, n) in masks.items():
        assert n == added[sp].sum()
        np.testing.assert_array_equal(m & ~low, select_split(table, sp))
    # A row mask selects as the subset does (without copying the cube first).
    from galsim_vae.pipeline.dataset import StampDataset

    m = masks["train"][0]
    a = StampDataset((images, table), m, "flux")
    b = StampDataset((images[m], table[m]), "all", "flux")
    np.testing.assert_array_equal(a.images, b.images)
    with pytest.raises(galsim.GalSimValueError, match="row mask"):
        StampDataset((images, table), m[:-1], "flux")
    argv = ["train", str(cut), "--preset", "tiny", "--epochs", "1", "--quiet", "--batch-size"]
    argv += ["8", "--loss", "gauss", "--out", str(tmp_path / "run")]
    assert main([*argv, "--with-low-snr"]) == 0
    ds = json.loads(read_metadata(tmp_path / "run" / "last.safetensors")["dataset"])
    assert ds["with_low_snr"] is True
    assert ds["n_train"] == masks["train"][0].sum() > select_split(table, "train").sum()
    assert ds["n_valid"] == masks["valid"][0].sum()
    # A run trained with them is another run: resuming it without them is refused.
    capsys.readouterr()
    assert main([*argv, "--epochs", "2"]) == 2
    assert "with_low_snr: True -> None" in capsys.readouterr().err


def test_cli_errors_are_clean(tmp_path, capsys):
    assert main(["dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "x.fits")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x.fits").exists()
    with pytest.raises(SystemExit):
        main(["dataset", "--help"])


def test_truncated_or_missing_inputs_are_named(real_dataset, tmp_path, capsys):
    # A dataset file cut short (an interrupted copy): every command says so and names the file,
    # before writing anything; a missing input is named as such.
    cut = tmp_path / "cut.fits"
    cut.write_bytes(real_dataset.read_bytes()[:100_000])
    for argv in (
        ["encode", str(cut), "--out", str(tmp_path / "e.fits")],
        ["train", str(cut), "--out", str(tmp_path / "run"), "--preset", "tiny"],
        ["validate", str(cut), "--out", str(tmp_path / "v")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "truncated or corrupt" in err and str(cut) in err, argv
    assert not (tmp_path / "e.fits").exists() and not (tmp_path / "e.fits.parts").exists()
    assert main(["encode", str(tmp_path / "nope.fits"), "--out", str(tmp_path / "e.fits")]) == 2
    assert "Input not found" in capsys.readouterr().err


def test_python_m_entry_point():
    r = subprocess.run(
        [sys.executable, "-m", "galsim_vae", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.startswith("galsim_vae ")


def test_outputs_are_never_lost(sim_dataset, tmp_path, capsys):
    from galsim_vae import default_model_path
    from galsim_vae.model import density_path

    shipped = density_path(default_model_path())
    before = shipped.read_bytes()
    # The shipped density is not rewritten by a default fit-density.
    assert main(["fit-density", str(sim_dataset), "--components", "2"]) == 2
    assert "--out" in capsys.readouterr().err and shipped.read_bytes() == before
    # An input is never replaced, even with --overwrite; an output only with --overwrite.
    copy = tmp_path / "in.fits"
    shutil.copy(sim_dataset, copy)
    size = copy.stat().st_size
    argv = ["encode", str(copy), "--out", str(copy), "--quiet", "--overwrite"]
    assert main(argv) == 2
    assert "input" in capsys.readouterr().err and copy.stat().st_size == size
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert main(["simulate", "--n", "2", "--out", str(notes), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err and notes.read_text() == "keep me"
    out = tmp_path / "d.npz"
    argv = ["fit-density", str(sim_dataset), "--components", "2", "--out", str(out)]
    assert main(argv) == 0 and main(argv) == 2
    assert "exists" in capsys.readouterr().err
    first = out.read_bytes()
    # Replaced on request (another mixture, so other bytes).
    assert main([*argv, "--components", "3", "--overwrite"]) == 0 and out.read_bytes() != first


def test_train_seed_fixes_the_initial_weights(sim_dataset, tmp_path):
    from galsim_vae.checkpoint import load_state_dict

    argv = ["train", str(sim_dataset), "--preset", "tiny", "--epochs", "1", "--quiet"]
    argv += ["--max-train", "16", "--batch-size", "8"]
    w = []
    for run, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main([*argv, "--out", str(tmp_path / run), "--seed", seed]) == 0
        w.append(load_state_dict(tmp_path / run / "last.safetensors")[0])
    assert all(np.array_equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(np.array_equal(w[0][k], w[2][k]) for k in w[0])


def test_train_init_fine_tunes_from_weights(sim_dataset, tmp_path, capsys):
    from galsim_vae.checkpoint import load_state_dict, read_metadata
    from galsim_vae.model import default_model_path

    argv = ["train", str(sim_dataset), "--preset", "tiny", "--epochs", "1", "--quiet"]
    argv += ["--max-train", "16", "--batch-size", "8", "--lr", "1e-9"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--seed", "3"]) == 0
    start = tmp_path / "a" / "last.safetensors"
    w0 = load_state_dict(start)[0]
    # Another seed, but the weights of run a: at a negligible rate they stay those weights.
    assert main([*argv, "--out", str(tmp_path / "b"), "--seed", "4", "--init", str(start)]) == 0
    w1 = load_state_dict(tmp_path / "b" / "last.safetensors")[0]
    conv = [k for k in w0 if k.endswith("weight") and w0[k].ndim == 4]
    assert conv and all(np.allclose(w0[k], w1[k], atol=1e-6) for k in conv)
    meta = read_metadata(tmp_path / "b" / "last.safetensors")
    assert json.loads(meta["init_sha256"]) == read_metadata(start)["sha256"]
    # Resuming run b from other starting weights would mix two runs.
    other = tmp_path / "c"
    assert main([*argv, "--out", str(other), "--seed", "5"]) == 0
    capsys.readouterr()
    b2 = [*argv, "--out", str(tmp_path / "b"), "--seed", "4", "--epochs", "2"]
    assert main([*b2, "--init", str(other / "last.safetensors")]) == 2
    assert "init" in capsys.readouterr().err
    # Another network or representation is refused before any training.
    assert (
        main([*argv, "--out", str(tmp_path / "d"), "--preset", "compact", "--init", str(start)])
        == 2
    )
    assert "preset" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main([*argv, "--out", str(tmp_path / "e"), "--init", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    # --positivity is a term of the gauss loss alone; the run records it, and a resume with
    # another weight would mix two runs.
    assert main([*argv, "--out", str(tmp_path / "p"), "--positivity", "10"]) == 2
    assert "positivity" in capsys.readouterr().err and not (tmp_path / "p").exists()
    gauss = ["--loss", "gauss", "--loss-param", "1"]
    assert main([*argv, *gauss, "--out", str(tmp_path / "q"), "--positivity", "10"]) == 0
    hist = json.loads((tmp_path / "q" / "history.json").read_text())
    assert hist[0]["valid_neg"] >= 0
    more = [*argv, "--epochs", "2", *gauss, "--out", str(tmp_path / "q"), "--positivity", "3"]
    capsys.readouterr()
    assert main(more) == 2 and "positivity" in capsys.readouterr().err
    # 'default' is the shipped model's weights, as --model takes it: a compact, gauss network.
    assert main([*argv, "--out", str(tmp_path / "f"), "--init", "default"]) == 2
    assert "preset" in capsys.readouterr().err
    shipped = ["--preset", "compact", "--loss", "gauss", "--loss-param", "1", "--init", "default"]
    assert main([*argv, "--out", str(tmp_path / "g"), *shipped]) == 0
    meta = read_metadata(tmp_path / "g" / "last.safetensors")
    assert json.loads(meta["init_sha256"]) == read_metadata(default_model_path())["sha256"]
    # A preset that only widens the decoder starts from the shipped weights, widened.
    widened = [*shipped[2:], "--preset", "wide-decoder"]
    assert main([*argv, "--out", str(tmp_path / "w"), *widened]) == 0
    w = load_state_dict(tmp_path / "w" / "last.safetensors")[0]
    d = load_state_dict(default_model_path())[0]
    assert w["decoder.net.6.weight"].shape == (128, 128, 4, 4)  # compact: (128, 64, 4, 4)
    enc = [k for k in d if k.startswith("encoder") and k.endswith("weight")]
    assert enc and all(np.allclose(w[k], d[k], atol=1e-6) for k in enc)
    # ... computing what the shipped decoder computes
    from galsim_vae.cli.model import _init_weights
    from galsim_vae.nn import PRESETS, VAE, VAEConfig, build_vae
    from galsim_vae.training.losses import VAELoss

    wide = build_vae(dataclasses.replace(PRESETS["wide-decoder"], output="linear"))
    _init_weights(wide, "default", VAELoss("gauss", 1.0), seed=2)
    ref = VAE(VAEConfig.from_json(read_metadata(default_model_path())["architecture"]))
    ref.load_state_dict({k: torch.as_tensor(v) for k, v in d.items()})
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = wide.eval().decoder(z), ref.eval().decoder(z)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    # but not a network that differs otherwise (another encoder)
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "x"), *shipped[2:], "--preset", "wide"]) == 2
    assert "preset" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_side_outputs_and_catalog_folders_are_protected(btk_dir, tmp_path, capsys):
    # simulate's figure is OUT with .png: an --out ending in .png would be overwritten by it.
    assert main(["simulate", "--n", "2", "--out", str(tmp_path / "s.png"), "--quiet"]) == 2
    assert "figure" in capsys.readouterr().err and not (tmp_path / "s.png").exists()
    # A catalog given as a folder: none of its files may be an output, even with --overwrite.
    images = btk_dir / "real_galaxy_images_extension.fits"
    size = images.stat().st_size
    argv = ["encode", str(btk_dir), "--out", str(images), "--overwrite", "--quiet"]
    assert main(argv) == 2
    assert "input" in capsys.readouterr().err and images.stat().st_size == size


@pytest.mark.parametrize(
    "argv,message",
    [
        (["encode", "x.fits", "--out", "y.fits", "--chunk-size", "-5"], "-5 is below"),
        (["encode", "x.fits", "--out", "y.fits", "--chunk-size", "0"], "0 is below"),
        (["train", "x.fits", "--out", "r", "--batch-size", "1"], "1 is below the minimum 2"),
        (["train", "x.fits", "--out", "r", "--epochs", "0"], "0 is below"),
        (["train", "x.fits", "--out", "r", "--lr", "nan"], "nan is not a finite positive"),
        (["train", "x.fits", "--out", "r", "--lr", "-1"], "-1 is not a finite positive"),
        (["draw", "--pixel-scale", "0"], "0 is not a finite positive"),
        (["draw", "--gallery", "0"], "0 is below"),
        (["fit-density", "x.fits", "--components", "0"], "0 is below"),
        (["simulate", "--out", "s.fits", "--n", "ten"], "'ten' is not an integer"),
    ],
)
def test_bad_numbers_exit_2_naming_the_value(argv, message, capsys):
    # Refused while parsing, before any file is read or written.
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_output_folders_are_not_overwritten(tmp_path, capsys):
    # draw, evaluate and validate write into folders: a folder holding their files is refused
    # before any work unless --overwrite, and so is an --out that is a file.
    out = tmp_path / "draw"
    argv = ["draw", "--out", str(out), "--n", "2", "--size", "48", "--gallery", "8"]
    assert main(argv) == 0
    first = (out / "scene.fits").read_bytes()
    assert main([*argv, "--seed", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "scene.fits").read_bytes() == first
    assert main([*argv, "--seed", "5", "--overwrite"]) == 0
    assert (out / "scene.fits").read_bytes() != first
    for cmd in (["evaluate", "default", "x.fits"], ["validate", "x.fits"]):
        d = tmp_path / cmd[0]
        d.mkdir()
        name = "evaluate.json" if cmd[0] == "evaluate" else "validation.json"
        (d / name).write_text("keep me")
        assert main([*cmd, "--out", str(d)]) == 2
        assert "--overwrite" in capsys.readouterr().err and (d / name).read_text() == "keep me"
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    assert main(["draw", "--out", str(f)]) == 2 and f.read_text() == "keep me"
