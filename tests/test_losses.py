import math

import pytest
import torch
from galsim.errors import GalSimRangeError, GalSimValueError

from galsim_vae.training.losses import FLOOR_THRESHOLD, VAELoss, bce_per_image, kl_per_image


def _tiny():
    y = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    p = torch.tensor([[[[0.1, 0.8], [0.5, 0.5]]]])
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    return y, p, mu, logvar


def _hand():
    bce = -(
        math.log(0.9) + math.log(0.8) + math.log(0.5) + 0.25 * math.log(0.5) + 0.75 * math.log(0.5)
    )
    # KL of N(1, 1) and N(-2, 4) from N(0, 1): 0.5 * sum(mu^2 + var - 1 - log var)
    kl = 0.5 * ((1 + 1 - 1 - 0) + (4 + 4 - 1 - math.log(4.0)))
    return bce, kl


def test_terms_match_hand_computation():
    y, p, mu, lv = _tiny()
    bce, kl = _hand()
    assert bce_per_image(p, y).item() == pytest.approx(bce, rel=1e-6)
    assert kl_per_image(mu, lv).item() == pytest.approx(kl, rel=1e-6)
    assert kl > 0  # the paper's eq. 4 is minus this


def test_three_losses():
    y, p, mu, lv = _tiny()
    bce, kl = _hand()
    npix = 4
    assert VAELoss("original")(p, y, mu, lv).item() == pytest.approx((bce + kl) / npix, rel=1e-6)
    assert VAELoss("beta")(p, y, mu, lv).item() == pytest.approx((bce + 1e-2 * kl) / npix, rel=1e-6)
    assert VAELoss("beta", 0.5)(p, y, mu, lv).item() == pytest.approx(
        (bce + 0.5 * kl) / npix, rel=1e-6
    )
    # eq. 8: BCE - max(-lambda, -KL) = BCE + min(KL, lambda)
    assert VAELoss("flow", 2.0)(p, y, mu, lv).item() == pytest.approx((bce + 2.0) / npix, rel=1e-6)
    assert VAELoss("flow", 100.0)(p, y, mu, lv).item() == pytest.approx((bce + kl) / npix, rel=1e-6)


def test_flow_clip_stops_kl_gradient():
    y, p, mu, lv = _tiny()
    mu = mu.clone().requires_grad_(True)
    VAELoss("flow", 1.0)(p, y, mu, lv).backward()
    assert torch.all(mu.grad == 0)
    mu.grad = None
    VAELoss("beta")(p, y, mu, lv).backward()
    assert torch.all(mu.grad != 0)


def test_bad_losses():
    # GalSim's error classes, as everywhere in the package.
    with pytest.raises(GalSimValueError, match="Unknown loss"):
        VAELoss("mse")
    with pytest.raises(GalSimRangeError, match=">= 0"):
        VAELoss("beta", -1.0)


def test_gauss_loss_is_the_gaussian_likelihood():
    torch.manual_seed(3)
    y = torch.rand(3, 1, 8, 8)
    recon = y + 0.1 * torch.randn(3, 1, 8, 8)
    mu, lv = torch.randn(3, 4), 0.1 * torch.randn(3, 4)
    sigma = torch.tensor([0.1, 0.2, 0.05])
    t = VAELoss("gauss").terms(recon, y, mu, lv, sigma)
    chi2 = (((recon - y) / sigma[:, None, None, None]) ** 2).flatten(1).sum(1)
    kl = kl_per_image(mu, lv)
    assert t["chi2"].item() == pytest.approx(chi2.mean().item() / 64, rel=1e-5)
    assert t["loss"].item() == pytest.approx((0.5 * chi2 + kl).mean().item() / 64, rel=1e-5)
    half = VAELoss("gauss", 0.5)(recon, y, mu, lv, sigma)
    assert half.item() == pytest.approx((0.5 * chi2 + 0.5 * kl).mean().item() / 64, rel=1e-5)
    # Each stamp is weighted by its own noise: a noisier stamp counts less.
    lo = VAELoss("gauss").terms(recon, y, mu, lv, torch.tensor([0.1, 0.2, 1.0]))
    assert lo["chi2"] < t["chi2"]
    assert VAELoss("gauss").representation == "flux" and VAELoss("beta").representation == "minmax"
    with pytest.raises(GalSimValueError, match="noise sigma"):
        VAELoss("gauss")(recon, y, mu, lv)


def test_positivity_charges_only_negative_pixels():
    torch.manual_seed(4)
    y = torch.rand(2, 1, 8, 8)
    mu, lv = torch.zeros(2, 4), torch.zeros(2, 4)
    sigma = torch.tensor([0.1, 0.5])
    recon = y.clone()
    recon[0, 0, 0, :3] = torch.tensor([-0.2, -0.1, 0.3])  # two negative pixels in stamp 0
    plain = VAELoss("gauss").terms(recon, y, mu, lv, sigma)
    pos = VAELoss("gauss", positivity=4.0).terms(recon, y, mu, lv, sigma)
    neg = (0.2 / 0.1) ** 2 + (0.1 / 0.1) ** 2  # stamp 0's negative part against zero; stamp 1 none
    assert pos["neg"].item() == pytest.approx(neg / 2 / 64, rel=1e-5)
    assert pos["loss"].item() == pytest.approx(
        plain["loss"].item() + 0.5 * 4.0 * neg / 2 / 64, rel=1e-5
    )
    assert pos["chi2"].item() == pytest.approx(plain["chi2"].item())
    # Its gradient reaches only the negative pixels (the chi2's is zero here: recon == y else).
    r = y.clone().requires_grad_(True)
    with torch.no_grad():
        r[0, 0, 0, 0] = -0.2
    target = torch.where(r > 0, r, 0 * r).detach()
    VAELoss("gauss", positivity=1.0)(r, target, mu, lv, sigma).backward()
    g = r.grad
    # Pixel (0,0) is pushed up by both terms; every non-negative pixel gets nothing.
    assert g[0, 0, 0, 0] < 0 and torch.count_nonzero(g) == 1
    with pytest.raises(GalSimValueError, match="gauss loss"):
        VAELoss("beta", positivity=1.0)
    with pytest.raises(GalSimRangeError, match="positivity"):
        VAELoss("gauss", positivity=-1.0)


def test_floor_pulls_the_empty_pixels_to_the_truth_from_both_sides():
    # A truth with a bright core and an empty rest: the floor term charges the reconstruction's
    # departures from the truth where the truth is below FLOOR_THRESHOLD of its peak, up or down.
    truth = torch.zeros(2, 1, 8, 8)
    truth[:, 0, 3:5, 3:5] = 1.0
    truth[:, 0, 2, 3] = 0.5 * FLOOR_THRESHOLD  # faint wing: in the floor's pixels
    truth[:, 0, 5, 3] = 2.0 * FLOOR_THRESHOLD  # brighter wing: not
    mu, lv = torch.zeros(2, 4), torch.zeros(2, 4)
    sigma = torch.tensor([0.1, 0.5])
    recon = truth.clone()
    recon[0, 0, 0, 0] = 0.2  # a positive floor pixel
    recon[0, 0, 7, 7] = -0.1  # a negative one
    recon[0, 0, 2, 3] += 0.3  # the faint wing, too bright
    recon[0, 0, 5, 3] += 0.3  # the brighter wing: only the likelihood sees it
    recon[1, 0, 3, 3] += 0.4  # the core of stamp 1: only the likelihood
    plain = VAELoss("gauss").terms(recon, truth, mu, lv, sigma)
    fl = VAELoss("gauss", floor=3.0).terms(recon, truth, mu, lv, sigma)
    expect = (0.2**2 + 0.1**2 + 0.3**2) / 0.1**2  # stamp 0; stamp 1's floor is the truth's
    assert fl["floor"].item() == pytest.approx(expect / 2 / 64, rel=1e-5)
    assert fl["loss"].item() == pytest.approx(
        plain["loss"].item() + 0.5 * 3.0 * expect / 2 / 64, rel=1e-5
    )
    assert fl["chi2"].item() == pytest.approx(plain["chi2"].item())
    # Its gradient pushes a positive floor down and a negative one up, and leaves the galaxy.
    r = recon.clone().requires_grad_(True)
    VAELoss("gauss", floor=1.0).terms(r, truth, mu, lv, sigma)["floor"].backward()
    g = r.grad
    assert g[0, 0, 0, 0] > 0 and g[0, 0, 7, 7] < 0 and g[0, 0, 2, 3] > 0
    assert g[0, 0, 5, 3] == 0 and g[1, 0, 3, 3] == 0 and torch.count_nonzero(g) == 3
    with pytest.raises(GalSimValueError, match="gauss loss"):
        VAELoss("beta", floor=1.0)
    with pytest.raises(GalSimRangeError, match="floor"):
        VAELoss("gauss", floor=-1.0)
