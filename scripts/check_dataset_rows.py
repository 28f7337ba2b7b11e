#!/usr/bin/env python3
"""Check a dataset file written from a COSMOS catalog against the catalog, row by row.

    python scripts/check_dataset_rows.py DATASET CATALOG [--n 300] [--seed 0]

Every catalog row appears once, in order (the ``catalog_row`` column); and ``--n`` rows picked
at random are drawn again from the catalog, with the dataset's own stamp settings and seed, and
must equal the file's stamps and PSFs bit for bit. After a killed and resumed ``dataset`` run this
shows that nothing was lost, duplicated or mixed up.
"""

import argparse
import sys

import galsim
import numpy as np
from astropy.io import fits

from galsim_vae.pipeline._parallel import item_seed
from galsim_vae.pipeline.stamps import open_catalog, real_stamp


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("catalog")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rgc = open_catalog(a.catalog)
    with fits.open(a.dataset, memmap=True) as h:
        hdr, table = h[0].header, h["CATALOG"].data
        rows = np.asarray(table["catalog_row"])
        ok = bool(np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < rgc.nobjects)
        print(f"{len(rows)} rows of {rgc.nobjects} catalog rows, strictly increasing: {ok}")
        picks = np.sort(np.random.default_rng(a.seed).choice(len(rows), a.n, replace=False))
        kw = dict(
            stamp_size=int(hdr["STAMPSZ"]),
            scale_mode=hdr["SCALEMOD"],
            pixel_scale=float(table["pixel_scale"][0]) if hdr["SCALEMOD"] == "fixed" else 0.03,
        )
        same = 0
        for k in picks:
            i = int(rows[k])
            r = real_stamp(rgc, i, rng=galsim.BaseDeviate(item_seed(int(hdr["SEED"]), i)), **kw)
            psf_k = int(table["psf_index"][k])
            same += bool(
                np.array_equal(r["image"], h["STAMPS"].section[k])
                and np.array_equal(r["psf"], h["PSFS"].section[psf_k])
            )
    print(f"{same} of {a.n} random rows drawn again equal the file's stamps and PSFs")
    return 0 if ok and same == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
