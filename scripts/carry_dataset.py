"""Carry a simulated training set to another machine in a twentieth of its size, and rebuild it
there with a new noise realisation of the same noise model.

    python scripts/carry_dataset.py pack SIM.fits PACK_DIR [--step 8]
    python scripts/carry_dataset.py unpack PACK_DIR OUT.fits [--noise-seed 1] [--nproc N]

A simulated set's noisy stamps are incompressible (the noise is), its noiseless truths are not.
``pack`` keeps, of the rows that training with ``--with-low-snr`` can read (the passing rows of
the train and valid splits, and every row below the SNR cut, whose split labels are drawn over
all of them), the truths quantised to 1/STEP of each stamp's noise sigma (adding (1/STEP)^2/12 of
the noise variance: 0.13% at STEP 8) and lzma-compressed, with the catalog and header as they
are. v6's training set (32,000 stamps, 1.2 GB with its truths) packs into 27 MB (21 MB of
truths, 7 MB of catalog).

``unpack`` draws each kept stamp's noise again, as ``galsim_vae.pipeline.simulator`` made it
(COSMOS correlated noise at the row's variance, drawn at 0.03"/px on the row's original grid and
resampled to its pixel scale when coarser), adds it to the truth, and shifts the stamp by a
constant so that its pixel sum is the original noisy stamp's (the catalog's ``flux``): flux
normalisation and the low-SNR selection, both of which read that sum, then see what the original
file gave them. The rows that were not kept are zero (no command that trains reads them). The
rebuilt file has STAMPS and CATALOG (no PSFS, no TRUTH); the script checks that
``select_with_low_snr`` picks the same train and valid rows as in the original, and that the
noise measured on the rebuilt stamps (``noise_sigma`` of the quality metrics) is the catalog's
(median ratio within 2%), before it moves the file into place.

Made to move v6's training set to a GPU machine (scripts/gpu_widen.sh) where simulating it again
took 6 of the 10 minutes a command may run. The same commands run on any machine. Drawing the
noise costs ~50-70 ms a stamp on one core (the resampling of the coarser stamps): ~15 min for
v6's 27,915 kept rows on 2 cores, ~2 min on 16.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
import time
from pathlib import Path

import numpy as np


def _masks(table, header, images):
    from galsim_vae.pipeline.dataset import select_with_low_snr

    return {s: select_with_low_snr(table, header, images, s)[0] for s in ("train", "valid")}


def _digest(mask):
    return hashlib.sha256(np.flatnonzero(mask).astype(np.int64).tobytes()).hexdigest()


def pack(src, out, step):
    from astropy.io import fits

    from galsim_vae.pipeline.dataset import low_snr_rows, read_dataset, read_truths

    images, table, _, header = read_dataset(src)
    truths = read_truths(src)
    if truths is None:
        sys.exit(f"{src} has no TRUTH HDU: simulate it without --no-truth")
    masks = _masks(table, header, images)
    sigma = np.asarray(table["noise_sigma"], dtype=np.float64)
    passes = np.asarray(table["passes"], dtype=bool)
    split = np.asarray(table["split"])
    keep = (passes & np.isin(split, ["train", "valid"])) | low_snr_rows(table, header, images)
    rows = np.flatnonzero(keep)
    if not np.all(np.isfinite(sigma[rows]) & (sigma[rows] > 0)):
        sys.exit("rows without a positive noise_sigma cannot be quantised")
    q = sigma[rows] / step
    t = np.rint(truths[rows] / q[:, None, None]).astype(np.int32)
    err = np.abs(truths[rows] - t * q[:, None, None].astype(np.float32)).max()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "truths.i32.xz").write_bytes(lzma.compress(t.tobytes(), preset=6))
    np.savez(out / "rows.npz", rows=rows, q=q)
    with fits.open(src, memmap=True) as h:
        fits.HDUList([fits.PrimaryHDU(header=h[0].header), h["CATALOG"].copy()]).writeto(
            out / "catalog.fits.gz", overwrite=True
        )
    meta = {
        "source": str(src),
        "n": len(table),
        "rows": len(rows),
        "step": step,
        "max_quantisation_error": float(err),
        "masks": {s: _digest(m) for s, m in masks.items()},
        "mask_sizes": {s: int(m.sum()) for s, m in masks.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"packed {len(rows)} of {len(table)} rows into {out} ({size / 2**20:.1f} MiB)")


class _Noise:
    """Per-process: the COSMOS noise model, as the simulator builds it."""

    def __init__(self, seed, size):
        import galsim

        from galsim_vae.psf import HST_PIXEL_SCALE

        cf = Path(galsim.meta_data.share_dir) / "acs_I_unrot_sci_20_cf.fits"
        self.noise = galsim.getCOSMOSNoise(file_name=str(cf), cosmos_scale=HST_PIXEL_SCALE)
        self.seed, self.size = seed, size

    def __call__(self, item):
        import galsim

        from galsim_vae._utils import item_seed
        from galsim_vae.pipeline.simulator import resample
        from galsim_vae.psf import HST_PIXEL_SCALE

        row, variance, scale, n0 = item
        noise = self.noise.withVariance(variance).copy(
            rng=galsim.BaseDeviate(item_seed(self.seed, row))
        )
        # as the simulator: at 0.03"/px on the stamp's grid, or on its original, larger grid and
        # then resampled to the stamp's coarser scale
        im = galsim.ImageF(n0, n0, scale=HST_PIXEL_SCALE)
        im.addNoise(noise)
        if n0 == self.size:
            return im.array.copy()
        return resample(im, self.size, scale).array.astype(np.float32)


def unpack(src, out, noise_seed, nproc):
    from astropy.io import fits
    from astropy.table import Table

    from galsim_vae.pipeline._parallel import parallel_map
    from galsim_vae.pipeline.dataset import read_dataset
    from galsim_vae.pipeline.metrics import stamp_metrics

    src = Path(src)
    meta = json.loads((src / "meta.json").read_text())
    rr = np.load(src / "rows.npz")
    rows, q = rr["rows"], rr["q"]
    t0 = time.time()
    with fits.open(src / "catalog.fits.gz") as h:
        header = h[0].header.copy()
        cat = Table(h["CATALOG"].data)
    size = int(header["STAMPSZ"])
    t = np.frombuffer(lzma.decompress((src / "truths.i32.xz").read_bytes()), dtype=np.int32)
    truths = t.reshape(len(rows), size, size).astype(np.float64) * q[:, None, None]
    items = [
        (
            int(r),
            float(cat["catalog_noise_variance"][r]),
            float(cat["pixel_scale"][r]),
            int(cat["original_size"][r]),
        )
        for r in rows
    ]
    # The package's pool: single-threaded workers (GalSim's OpenMP threads in 16 workers of a
    # plain pool made a 16-core machine slower than one process).
    noise = parallel_map(_Noise, (noise_seed, size), items, nproc=nproc, desc="noise", chunk=128)
    print(f"noise drawn for {len(rows)} stamps in {time.time() - t0:.0f} s", flush=True)
    stamps = truths + np.asarray(noise, dtype=np.float64)
    # The original noisy stamp's pixel sum, kept exactly (a constant of ~1/64 sigma a pixel).
    flux = np.asarray(cat["flux"], dtype=np.float64)[rows]
    stamps += ((flux - stamps.sum(axis=(1, 2))) / size**2)[:, None, None]
    images = np.zeros((meta["n"], size, size), dtype=np.float32)
    images[rows] = stamps.astype(np.float32)
    header["CARRIED"] = (f"{meta['source']}"[-60:], "rebuilt by scripts/carry_dataset.py")
    header["NOISESD"] = (noise_seed, "carry_dataset.py noise seed")
    with fits.open(src / "catalog.fits.gz") as h:
        hdus = fits.HDUList(
            [fits.PrimaryHDU(header=header), fits.ImageHDU(images, name="STAMPS"), h[1].copy()]
        )
        hdus.writeto(tmp := Path(f"{out}.part"), overwrite=True)
    images, table, _, header = read_dataset(tmp)
    masks = _masks(table, header, images)
    same = {s: _digest(m) == meta["masks"][s] for s, m in masks.items()}
    pick = rows[:: max(1, len(rows) // 500)]
    measured = [stamp_metrics(images[r])["noise_sigma"] for r in pick]
    ratio = float(np.median(np.asarray(measured) / np.asarray(table["noise_sigma"])[pick]))
    print(
        f"rebuilt in {time.time() - t0:.0f} s; same rows selected: {same}; measured noise / "
        f"catalog's: {ratio:.4f} (median of {len(pick)})",
        flush=True,
    )
    if not all(same.values()):
        sys.exit("the rebuilt set selects other train/valid rows than the original")
    if abs(ratio - 1) > 0.02:
        sys.exit("the rebuilt stamps' noise is not the catalog's")
    tmp.replace(out)
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("sim")
    a.add_argument("out")
    a.add_argument("--step", type=int, default=8)
    b = sub.add_parser("unpack")
    b.add_argument("pack")
    b.add_argument("out")
    b.add_argument("--noise-seed", type=int, default=1)
    b.add_argument("--nproc", type=int, default=2)
    a = p.parse_args(argv)
    if a.cmd == "pack":
        pack(a.sim, a.out, a.step)
    else:
        unpack(a.pack, a.out, a.noise_seed, a.nproc)


if __name__ == "__main__":
    main()
