"""Every figure galsim_vae writes, as PNG files.

Figures are built as ``matplotlib.figure.Figure`` objects and written with their own canvas, not
through ``pyplot``: nothing here selects or changes matplotlib's backend, so a notebook that
imports galsim_vae keeps its own, and no figure is left open.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.ticker as mticker
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "METRIC_COLUMNS",
    "plot_metrics",
    "plot_metric_comparison",
    "plot_learning_curve",
    "plot_reconstructions",
    "plot_latent_snr",
    "plot_traversals",
    "plot_latent_histograms",
    "plot_gallery",
    "plot_scene",
    "plot_rotation_denoise",
    "plot_chi2_comparison",
    "plot_attribute_report",
    "plot_validation",
    "save",
]

#: (column, label, log-scale) of the quality metrics shown in the dataset figures.
METRIC_COLUMNS = (
    ("snr", "SNR", True),
    ("width_arcsec", 'Width ["]', False),
    ("nonuniformity", "NonUniformity", True),
    ("flux_fraction", "flux fraction in stamp", False),
)


def save(fig, path):
    """Write ``fig`` as a PNG to ``path`` (folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _subplots(nrows=1, ncols=1, *, figsize=None, **kwargs):
    """``pyplot.subplots`` without pyplot: a free-standing Figure and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _show(ax, img, title=None):
    ax.imshow(img, origin="lower", cmap="magma", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _logx(ax):
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _bins(values, log):
    v = values[np.isfinite(values)]
    if log:
        v = v[v > 0]
        return np.geomspace(max(v.min(), 1e-3), v.max(), 30) if len(v) else 10
    return 30


def plot_metrics(images, table, path, *, title="Quality metrics"):
    """The paper's Fig. 2: per metric, its histogram and the stamps of lowest and highest value."""
    fig, axes = _subplots(
        len(METRIC_COLUMNS),
        7,
        figsize=(13, 2.1 * len(METRIC_COLUMNS)),
        gridspec_kw={"width_ratios": [3, 1, 1, 1, 1, 1, 1]},
    )
    passes = np.asarray(table["passes"], dtype=bool) if "passes" in table.colnames else None
    for row, (col, label, log) in zip(axes, METRIC_COLUMNS, strict=False):
        v = np.asarray(table[col], dtype=float)
        ax = row[0]
        bins = _bins(v, log)
        ax.hist(v[np.isfinite(v)], bins=bins, color="0.7", label="all")
        if passes is not None:
            ax.hist(
                v[passes & np.isfinite(v)],
                bins=bins,
                histtype="step",
                color="C0",
                label="passes cuts",
            )
        if log:
            _logx(ax)
        ax.set_xlabel(label)
        ax.legend(fontsize=6)
        order = np.argsort(np.where(np.isfinite(v), v, np.inf))
        finite = order[np.isfinite(v[order])]
        picks = list(finite[:3]) + list(finite[-3:])
        for a, k in zip(row[1:], picks, strict=False):
            _show(a, images[k], f"{label.split()[0]}={v[k]:.3g}")
    fig.suptitle(title)
    return save(fig, path)


def plot_metric_comparison(tables, labels, path, *, title="Simulated vs real stamps"):
    """Overlaid, normalised histograms of each metric for several datasets."""
    fig, axes = _subplots(1, len(METRIC_COLUMNS), figsize=(4 * len(METRIC_COLUMNS), 3.2))
    for ax, (col, label, log) in zip(axes, METRIC_COLUMNS, strict=False):
        allv = np.concatenate([np.asarray(t[col], dtype=float) for t in tables])
        bins = _bins(allv, log)
        for t, lab in zip(tables, labels, strict=False):
            v = np.asarray(t[col], dtype=float)
            ax.hist(
                v[np.isfinite(v)],
                bins=bins,
                density=True,
                histtype="step",
                lw=1.5,
                label=f"{lab} (N={len(v)})",
            )
        if log:
            _logx(ax)
        ax.set_xlabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path)


def plot_learning_curve(history, path, *, title="Learning curve"):
    """Train and validation loss per epoch (the paper's Figs. 4 and 8)."""
    fig, ax = _subplots(figsize=(5, 3.5))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    ax.plot(ep, [h["valid_loss"] for h in history], "s-", ms=3, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per pixel")
    ax.legend()
    ax.set_title(title)
    return save(fig, path)


def plot_reconstructions(inputs, recons, path, *, n=8, title="Reconstructions", sigma=None):
    """Rows of input, reconstruction and residual (the paper's Fig. 6)."""
    n = min(n, len(inputs))
    fig, axes = _subplots(3, n, figsize=(1.4 * n, 4.4), squeeze=False)
    for j in range(n):
        lo, hi = np.percentile(inputs[j], [1, 99.8])
        for i, img in enumerate([inputs[j], recons[j]]):
            axes[i, j].imshow(img, origin="lower", cmap="magma", vmin=lo, vmax=hi)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        res = recons[j] - inputs[j]
        s = np.abs(res).max() if sigma is None else 5 * sigma[j]
        axes[2, j].imshow(res, origin="lower", cmap="RdBu_r", vmin=-s, vmax=s)
        axes[2, j].set_xticks([])
        axes[2, j].set_yticks([])
    for i, lab in enumerate(["input", "reconstruction", "residual"]):
        axes[i, 0].set_ylabel(lab, fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def plot_reconstructions_compared(
    inputs, recons, path, *, n=8, title="Reconstructions", sigma=None
):
    """Rows of input, then for each labelled reconstruction (``recons``: ``{label: stack}``) its
    row and its residual's (within +-5 sigma, or the largest residual when ``sigma`` is None),
    every reconstruction on its input's colour scale."""
    n = min(n, len(inputs))
    rows = 1 + 2 * len(recons)
    fig, axes = _subplots(rows, n, figsize=(1.4 * n, 1.45 * rows + 0.2), squeeze=False)
    labels = ["input"]
    for lab in recons:
        labels += [lab, "residual"]
    for j in range(n):
        lo, hi = np.percentile(inputs[j], [1, 99.8])
        axes[0, j].imshow(inputs[j], origin="lower", cmap="magma", vmin=lo, vmax=hi)
        for k, rec in enumerate(recons.values()):
            res = rec[j] - inputs[j]
            s = np.abs(res).max() if sigma is None else 5 * sigma[j]
            axes[1 + 2 * k, j].imshow(rec[j], origin="lower", cmap="magma", vmin=lo, vmax=hi)
            axes[2 + 2 * k, j].imshow(res, origin="lower", cmap="RdBu_r", vmin=-s, vmax=s)
        for i in range(rows):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    for i, lab in enumerate(labels):
        axes[i, 0].set_ylabel(lab, fontsize=7)
    fig.subplots_adjust(hspace=0.3)
    fig.suptitle(title)
    return save(fig, path)


def plot_latent_snr(snrs, labels, path, *, title="Latent SNR (eq. 6)"):
    """Sorted latent SNR of one or more models (the paper's Figs. 5, 9, 11)."""
    fig, ax = _subplots(figsize=(6, 3.5))
    for s, lab in zip(snrs, labels, strict=False):
        ax.semilogy(np.sort(np.asarray(s))[::-1], "o-", ms=3, label=lab)
    ax.axhline(1, color="0.5", ls=":")
    ax.set_xlabel("latent variable (sorted)")
    ax.set_ylabel(r"$\mu_{std} / \sigma_{mean}$")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save(fig, path)


def plot_traversals(grid, steps, latents, path, *, title="Latent traversals"):
    """Decoded images for each latent (rows) stepped from -3 to +3 std (columns)."""
    nr, nc = grid.shape[:2]
    fig, axes = _subplots(nr, nc, figsize=(1.2 * nc, 1.2 * nr), squeeze=False)
    for i in range(nr):
        for j in range(nc):
            axes[i, j].imshow(grid[i, j], origin="lower", cmap="magma")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"{steps[j]:+g}σ", fontsize=7)
        axes[i, 0].set_ylabel(f"z{latents[i]}", fontsize=7)
    fig.suptitle(title)
    return save(fig, path)


def plot_latent_histograms(mu, path, *, title="Latent means vs N(0, 1)"):
    """Histogram of every latent mean against the unit Gaussian (the paper's Figs. 13-15)."""
    k = mu.shape[1]
    nc = 8
    nr = int(np.ceil(k / nc))
    fig, axes = _subplots(nr, nc, figsize=(1.6 * nc, 1.2 * nr), squeeze=False)
    x = np.linspace(-4, 4, 100)
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        v = mu[:, i][np.isfinite(mu[:, i])]
        lo, hi = min(-4.0, v.min()), max(4.0, v.max())
        ax.hist(v, bins=30, range=(lo, hi), density=True, color="C0", alpha=0.7)
        ax.plot(x, np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), "k-", lw=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"z{i}", fontsize=6)
    fig.suptitle(title)
    return save(fig, path)


def plot_gallery(images, path, *, ncol=8, title="Samples", scale=None):
    """A grid of stamps."""
    n = len(images)
    nr = int(np.ceil(n / ncol))
    fig, axes = _subplots(nr, ncol, figsize=(1.3 * ncol, 1.3 * nr), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.imshow(images[i], origin="lower", cmap="magma", interpolation="nearest")
        else:
            ax.axis("off")
    if scale:
        title = f'{title} ({images.shape[-1]} px at {scale:g}"/px)'
    fig.suptitle(title)
    return save(fig, path)


def plot_scene(image, path, *, title="Scene"):
    """A drawn scene with an asinh stretch."""
    arr = np.asarray(image)
    sig = np.std(arr[arr < np.percentile(arr, 60)]) or 1.0
    fig, ax = _subplots(figsize=(7, 7))
    ax.imshow(np.arcsinh(arr / (2 * sig)), origin="lower", cmap="gray_r")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return save(fig, path)


def plot_scenes(images, path, *, title="Scenes"):
    """Scenes side by side (dict label -> image), each with an asinh stretch at its own noise
    level and the same limits, so that their galaxies compare by eye."""
    n = len(images)
    fig, axes = _subplots(1, n, figsize=(6.5 * n, 7), squeeze=False)
    for ax, (label, image) in zip(axes.flat, images.items()):
        arr = np.asarray(image)
        sig = np.std(arr[arr < np.percentile(arr, 60)]) or 1.0
        ax.imshow(np.arcsinh(arr / (2 * sig)), origin="lower", cmap="gray_r", vmin=-1, vmax=6)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label)
    fig.suptitle(title)
    return save(fig, path)


def plot_rotation_denoise(rot, den, inputs, path, *, title="Rotation invariance and denoising"):
    """The paper's Fig. 12 for one galaxy: rotated input and its reconstruction; noisy inputs
    at each SNR and their reconstructions."""
    k = 0
    cols = [
        ("input", inputs[k]),
        ("recon", den["base"][k]),
        ("rotated 30°", rot["rotated_inputs"][k]),
        ("recon of rotated", rot["recon_rotated"][k]),
    ]
    for snr, (_idx, noisy, rec) in zip(den["snr"], den["examples"]):
        cols += [(f"SNR {snr}", noisy), (f"recon SNR {snr}", rec)]
    fig, axes = _subplots(1, len(cols), figsize=(1.6 * len(cols), 2.0), squeeze=False)
    for ax, (lab, img) in zip(axes[0], cols):
        _show(ax, img, lab)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def plot_chi2_comparison(chi2_vae, chi2_sersic, snr, path, *, title="Reconstruction chi2"):
    """Chi2 per pixel of the VAE reconstruction and of the Sersic fit, against stamp SNR."""
    fig, ax = _subplots(figsize=(5.5, 3.8))
    ax.scatter(snr, chi2_sersic, s=14, label="Sersic fit (least squares)", marker="s")
    ax.scatter(snr, chi2_vae, s=14, label="VAE reconstruction")
    ax.axvline(np.median(snr), color="0.6", ls=":", label="median SNR")
    _logx(ax)
    ax.set_yscale("log")
    ax.set_xlabel("stamp SNR")
    ax.set_ylabel("chi2 per pixel")
    ax.legend(fontsize=7)
    ax.set_title(title)
    return save(fig, path)


def plot_attribute_report(rep, path):
    """Requested vs measured size of attribute-conditioned galaxies, and Sersic n by type."""
    fig, (a, b) = _subplots(1, 2, figsize=(9.5, 3.8))
    s = np.array(rep["size_requested"])
    a.fill_between(s, 0.9 * s, 1.1 * s, color="0.88", label="request ±10%")
    a.plot(s, s, "k:", lw=1)
    if "size_measured_16_84" in rep:
        lo, hi = np.array(rep["size_measured_16_84"]).T
        a.fill_between(s, lo, hi, color="C0", alpha=0.2, label="16-84% of generated")
    a.plot(s, rep["size_measured_median"], "o-", color="C0", label="median of generated")
    a.set_xscale("log")
    a.set_yscale("log")
    ticks = [
        v for v in (0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0) if s.min() / 1.5 <= v <= 1.5 * s.max()
    ]
    for axis in (a.xaxis, a.yaxis):
        axis.set_major_locator(mticker.FixedLocator(ticks))
        axis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(mticker.NullFormatter())
    a.set_xlabel('requested half-light radius ["]')
    a.set_ylabel('measured half-light radius ["] (Sersic fit)')
    a.legend(fontsize=7)
    x = np.arange(len(rep["types"]))
    b.errorbar(
        x,
        rep["sersic_n_by_type"],
        yerr=rep.get("sersic_n_by_type_error"),
        fmt="s-",
        capsize=3,
        label="generated (median, bootstrap error)",
    )
    ref = rep.get("sersic_n_by_type_training")
    if ref is not None:
        r = np.array([np.nan if v is None else v for v in ref], dtype=float)
        b.plot(x, r, "o--", color="0.5", label="training stamps of that type")
    b.set_xticks(x, rep["types"])
    h = rep.get("type_test_hlr")
    b.set_xlabel("requested Hubble type" + (f' (hlr {h:.2f}")' if h else ""))
    b.set_ylabel("Sersic n (measured)")
    b.legend(fontsize=7)
    fig.suptitle("Attribute-conditioned galaxies: requested vs measured on the decoded stamps")
    return save(fig, path)


def plot_real_vs_generated(rows, sigmas, path, *, scale, title="Real and generated galaxies"):
    """Rows of stamps side by side (e.g. real galaxies, their reconstructions, samples), each
    shown with an asinh stretch at its own noise sigma, so that faint structure shows as it
    would to the eye on a survey image.

    Parameters:
        rows: dict label -> ``(n, S, S)`` stamps, all of one pixel scale.
        sigmas: dict label -> ``(n,)`` noise sigmas of those stamps.
        path: output PNG.
        scale: arcsec per pixel, for the title.
    """
    labels = list(rows)
    n = max(len(v) for v in rows.values())
    fig, axes = _subplots(len(labels), n, figsize=(1.4 * n, 1.5 * len(labels)), squeeze=False)
    for r, lab in enumerate(labels):
        for i in range(n):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= len(rows[lab]):
                ax.axis("off")
                continue
            a = np.asarray(rows[lab][i], dtype=float) / max(float(sigmas[lab][i]), 1e-30)
            ax.imshow(
                np.arcsinh(a / 2),
                origin="lower",
                cmap="gray_r",
                vmin=-1,
                vmax=max(np.arcsinh(a.max() / 2), 1),
                interpolation="nearest",
            )
            if i == 0:
                ax.set_ylabel(lab, fontsize=8)
    size = np.asarray(next(iter(rows.values()))).shape[-1]
    fig.suptitle(f'{title} ({size} px at {scale:g}"/px, asinh stretch at each noise sigma)')
    return save(fig, path)


def plot_validation(stats, path, *, title="Real, VAE and Sersic galaxies"):
    """Overlaid histograms of each statistic for each population."""
    keys = list(next(iter(stats.values())))
    nc = 4
    nr = int(np.ceil(len(keys) / nc))
    fig, axes = _subplots(nr, nc, figsize=(4 * nc, 3 * nr), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        allv = np.concatenate([v[k][np.isfinite(v[k])] for v in stats.values()])
        if len(allv) == 0:
            continue
        lo, hi = np.percentile(allv, [1, 99])
        bins = np.linspace(lo, max(hi, lo + 1e-9), 20)
        for name, v in stats.items():
            vals = v[k][np.isfinite(v[k])]
            vals = vals[(vals >= bins[0]) & (vals <= bins[-1])]
            if len(vals) == 0:
                continue
            ax.hist(
                vals,
                bins=bins,
                histtype="step",
                density=True,
                lw=2 if name == "real" else 1,
                color="k" if name == "real" else None,
                label=name,
            )
        ax.set_xlabel(k)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(title)
    return save(fig, path)
