"""Cost per galaxy of a 1,000-galaxy scene: VAEGalaxy against GalSim's RealGalaxy.

Same layout (positions, rotations, fluxes, Moffat PSF of 0.7", 0.2"/px), measured side by side in
one run. The VAE galaxies are sampled and decoded in one batch, as ``VAEGalaxy.sample`` does.
Target: VAEGalaxy no slower than RealGalaxy (ratio <= 1).
"""

import galsim
import numpy as np
import pytest

from galsim_vae import VAEGalaxy, get_model

N = 1000
SIZE = 2048
SCALE = 0.2


def _layout(seed=5):
    ud = galsim.UniformDeviate(seed)
    return [
        (1 + ud() * (SIZE - 1), 1 + ud() * (SIZE - 1), ud() * 180, 1e3 * (1 + 9 * ud()))
        for _ in range(N)
    ]


def _draw(gals, layout):
    psf = galsim.Moffat(beta=3, fwhm=0.7)
    image = galsim.ImageF(SIZE, SIZE, scale=SCALE)
    for g, (x, y, rot, flux) in zip(gals, layout):
        obj = galsim.Convolve(g.withFlux(flux).rotate(rot * galsim.degrees), psf)
        stamp = obj.drawImage(scale=SCALE, center=galsim.PositionD(x, y))
        b = stamp.bounds & image.bounds
        if b.isDefined():
            image[b] += stamp[b]
    return image


def _check(image, layout):
    inside = sum(f for x, y, _, f in layout if 20 < x < SIZE - 20 and 20 < y < SIZE - 20)
    assert 0.97 * inside < image.array.sum() < 1.01 * sum(f for *_, f in layout)


def test_scene_vaegalaxy(benchmark):
    layout = _layout()
    model = get_model()

    def run():
        return _draw(VAEGalaxy.sample(N, galsim.BaseDeviate(1), model), layout)

    image = benchmark.pedantic(run, rounds=1, iterations=1)
    _check(image, layout)
    benchmark.extra_info["n"] = N


def test_scene_realgalaxy(benchmark, data_dir):
    layout = _layout()
    rgc = galsim.RealGalaxyCatalog(
        str(data_dir / "cosmos_btk100" / "real_galaxy_catalog_26_extension_example.fits")
    )
    rng = np.random.default_rng(1)
    idx = rng.integers(0, rgc.nobjects, N)

    def run():
        gals = [
            galsim.RealGalaxy(rgc, index=int(i), rng=galsim.BaseDeviate(int(i) + 1)) for i in idx
        ]
        return _draw(gals, layout)

    image = benchmark.pedantic(run, rounds=1, iterations=1)
    _check(image, layout)
    benchmark.extra_info["n"] = N


# The same scene through the `galsim` executable, as a GalSim user runs it: one YAML file per
# galaxy type differing only in the galaxy block (and the input it needs), each object built
# and drawn on its own by GalSim's config layer. Startup (imports, loading the model or the
# catalog) is included on both sides.
_CONFIG = """
modules: [{modules}]
psf: {{type: Moffat, beta: 3.0, fwhm: 0.7}}
gal:
{gal}
    flux: {{type: Random, min: 1000, max: 10000}}
    rotate: {{type: Random}}
{input}
image:
    type: Scattered
    size: {size}
    nobjects: {n}
    pixel_scale: {scale}
    random_seed: 5
    noise: {{type: Gaussian, sigma: 1.0}}
output: {{file_name: {out}}}
"""
_GAL = {
    "vaegalaxy": ("galsim_vae", "    type: VAEGalaxy", ""),
    "realgalaxy": (
        "",
        "    type: RealGalaxy\n    index: {type: Random}",
        "input:\n    real_catalog:\n        dir: {dir}\n        file_name: {file}",
    ),
}


@pytest.mark.parametrize("kind", ["vaegalaxy", "realgalaxy"])
def test_galsim_executable_scene(benchmark, kind, data_dir, tmp_path):
    import shutil
    import subprocess

    exe = shutil.which("galsim")
    if exe is None:
        pytest.skip("the galsim executable is not on PATH")
    modules, gal, inp = _GAL[kind]
    cat = data_dir / "cosmos_btk100"
    text = _CONFIG.format(
        modules=modules,
        gal=gal,
        input=inp.format(dir=cat, file="real_galaxy_catalog_26_extension_example.fits"),
        size=SIZE,
        n=N,
        scale=SCALE,
        out=tmp_path / f"{kind}.fits",
    )
    cfg = tmp_path / f"{kind}.yaml"
    cfg.write_text(text)

    def run():
        subprocess.run([exe, "-v", "0", str(cfg)], check=True, cwd=tmp_path)

    benchmark.pedantic(run, rounds=1, iterations=1)
    image = galsim.fits.read(str(tmp_path / f"{kind}.fits"))
    # The galaxies are there: fluxes uniform in 1,000-10,000 (a few fall partly off the edge).
    assert image.array.sum() > 0.8 * N * 5500
    benchmark.extra_info["n"] = N
