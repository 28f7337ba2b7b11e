"""Cost per galaxy of a 1,000-galaxy scene: VAEGalaxy against GalSim's RealGalaxy.

Same layout (positions, rotations, fluxes, Moffat PSF of 0.7", 0.2"/px), measured side by side in
one run. The VAE galaxies are sampled and decoded in one batch, as ``VAEGalaxy.sample`` does.
Target: VAEGalaxy no slower than RealGalaxy (ratio <= 1).
"""

import galsim
import numpy as np

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
