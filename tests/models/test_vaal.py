"""VAAL networks (rayal.models.vaal): shapes, reparameterisation, seeded construction."""
from __future__ import annotations

import pytest
import torch

from rayal.config.training import VaalConfig
from rayal.models.vaal import VAE, Discriminator, VaalModel


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.mark.parametrize("size", [(32, 32), (32, 48)])
def test_vae_shapes(size):
    vae = VAE(size, latent_dim=6, base_channels=4).eval()
    x = torch.rand(3, 3, *size)
    recon, z, mu, logvar = vae(x)
    assert recon.shape == x.shape
    assert z.shape == mu.shape == logvar.shape == (3, 6)
    # encoder: four stride-2 convs; decoder starts at (H/8, W/8)
    assert vae.encoder(x).shape == (3, 8 * 4 * (size[0] // 16) * (size[1] // 16))
    assert vae.decode(mu).shape == x.shape


def test_bad_sizes_and_inputs_are_named():
    with pytest.raises(ValueError, match="multiples of 16"):
        VAE((40, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        VAE((32, 32), base_channels=4).encode(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="vaal.image_size"):
        VaalConfig(image_size=(60, 64))


def test_reparameterisation_moments_and_seeding():
    mu = torch.tensor([[1.0, -2.0]]).expand(200_000, 2)
    logvar = torch.log(torch.tensor([[0.25, 4.0]])).expand(200_000, 2)  # sigma 0.5, 2
    z = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0]), rtol=0.01)
    again = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    other = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(again, z) and not torch.equal(other, z)
    # zero variance collapses to the mean; gradients flow to mu and logvar
    m = torch.zeros(4, 3, requires_grad=True)
    lv = torch.full((4, 3), -80.0, requires_grad=True)
    out = VAE.reparameterize(m, lv, torch.Generator().manual_seed(1))
    assert torch.allclose(out, torch.zeros(4, 3), atol=1e-12)
    out.sum().backward()
    assert torch.equal(m.grad, torch.ones(4, 3)) and lv.grad is not None


def test_discriminator_and_score_are_complementary_probabilities():
    model = VaalModel.from_config(VaalConfig(image_size=(32, 32), latent_dim=5, base_channels=4),
                                  seed=0).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        score, p = model(x), model.prob_labelled(x)
    assert score.shape == (4,) and Discriminator(5)(torch.rand(7, 5)).shape == (7,)
    assert torch.all((score >= 0) & (score <= 1))
    assert torch.allclose(score + p, torch.ones(4), atol=1e-6)


def test_from_config_is_seeded_and_keeps_global_rng():
    cfg = VaalConfig(image_size=(32, 32), latent_dim=4, base_channels=4)
    state = torch.random.get_rng_state()
    a, b, c = (VaalModel.from_config(cfg, seed=s).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
