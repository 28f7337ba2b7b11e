"""Measure the "Model v2" population targets of a model against real COSMOS data.

Samples ``--n`` galaxies from the model and prints the JSON summary of
:func:`galsim_vae.studies.population.population_report` (sky pedestals, sizes, magnitudes,
GREAT3 resolution, and which targets pass); with ``--out`` also writes ``population.json`` and
``population.png`` there.

    python scripts/check_population.py --n 200 --out /tmp/pop
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="weights file [default: the shipped model]")
    p.add_argument("--n", type=int, default=2000, help="galaxies to sample [default: 2000]")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling [default: 0]")
    p.add_argument("--out", default=None, help="folder for population.json and population.png")
    p.add_argument("--data", default=None, help="real data folder [default: found as usual]")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    a = p.parse_args(argv)

    import galsim

    from galsim_vae.studies.population import population_report

    try:
        report = population_report(
            a.model, n=a.n, seed=a.seed, data_dir=a.data, out_dir=a.out, overwrite=a.overwrite
        )
    except galsim.GalSimError as e:
        hint = " (pass --overwrite to replace them)" if "output exists" in str(e) else ""
        print(f"check_population: {e}{hint}", file=sys.stderr)
        return 2
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
