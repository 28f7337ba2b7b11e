#!/usr/bin/env python3
"""Build the format-exact stand-in of GalSim's COSMOS 25.2 training sample (docs/cosmos.md).

    python scripts/build_cosmos_standin.py OUT_DIR [--n 87000] [--seed 2029] [--nproc N]

Writes OUT_DIR/real_galaxy_catalog_25.2.fits, its _fits and _selection files, the numbered
image and PSF files (1,000 postage stamps each) and the noise correlation file, drawn by the
simulator from the real data (../shared/data or $GALSIM_VAE_DATA). Resumable: rerun the same
command after an interruption. Prints the time taken and the peak memory of this process.
"""

import argparse
import resource
import time

from galsim_vae.pipeline.standin import STANDIN_N, build_standin


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=STANDIN_N)
    p.add_argument("--per-file", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2029)
    p.add_argument("--morphology", default="structured", choices=("structured", "smooth"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--nproc", type=int, default=None)
    a = p.parse_args()
    t0 = time.perf_counter()
    cat = build_standin(
        a.out_dir,
        a.n,
        per_file=a.per_file,
        seed=a.seed,
        morphology=a.morphology,
        data_dir=a.data_dir,
        nproc=a.nproc,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"wrote {cat} ({a.n} galaxies) in {time.perf_counter() - t0:.0f} s; peak memory "
        f"{peak:.0f} MB (this process), {kids:.0f} MB (largest worker)"
    )


if __name__ == "__main__":
    main()
