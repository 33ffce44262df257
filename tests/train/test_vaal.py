"""VAAL training and scoring (rayal.train.vaal) on synthetic frames, on CPU."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rayal.config.training import VaalConfig
from rayal.data.synthetic import render_scene
from rayal.train.vaal import ImageBatches, _epoch_pairs, train_vaal, vae_loss, vaal_scores

CFG = VaalConfig(image_size=(32, 32), latent_dim=8, base_channels=8, epochs=8, batch_size=8, lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def scenes(seed: int, n: int) -> np.ndarray:
    return np.stack([render_scene(i, height=32, width=32, seed=seed)[0] for i in range(n)])


@pytest.fixture(scope="module")
def frames():
    """Labelled = synthetic scenes; unlabelled = other scenes, inverted (a visible shift)."""
    return scenes(0, 24), 255 - scenes(1, 24)


def train(frames, seed=0, cfg=CFG):
    labelled, unlabelled = frames
    return train_vaal(ImageBatches(labelled, 8, seed=0), ImageBatches(unlabelled, 8, seed=1), cfg, seed=seed)


def test_unlabelled_frames_look_unlabelled(frames):
    model = train(frames)
    assert not model.training and len(model.history) == CFG.epochs
    labelled, unlabelled = frames
    s_lab, s_unl = vaal_scores(model, labelled), vaal_scores(model, unlabelled)
    assert s_lab.dtype == np.float32 and s_lab.shape == (24,)
    assert np.all((s_lab >= 0) & (s_lab <= 1)) and np.all((s_unl >= 0) & (s_unl <= 1))
    assert s_unl.mean() > s_lab.mean() + 0.05
    # held-out frames of each kind are told apart the same way
    fresh = scenes(7, 12)
    assert vaal_scores(model, 255 - fresh).mean() > vaal_scores(model, fresh).mean()
    # the discriminator learned something: its loss fell below chance (ln 2)
    assert model.history[-1]["discriminator"] < math.log(2)


def test_same_seed_same_scores(frames):
    probe = np.concatenate(frames)[::3]
    a = vaal_scores(train(frames, seed=3), probe)
    b = vaal_scores(train(frames, seed=3), probe)
    c = vaal_scores(train(frames, seed=4), probe)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_float_and_uint8_inputs_agree_and_resize(frames):
    cfg = CFG.model_copy(update={"epochs": 1})
    model = train(frames, cfg=cfg)
    x = frames[0][:5]
    as_float = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    assert np.allclose(vaal_scores(model, x), vaal_scores(model, as_float), atol=1e-6)
    big = torch.nn.functional.interpolate(as_float, size=(64, 64), mode="nearest")
    assert vaal_scores(model, big).shape == (5,)  # resized to the model's 32x32
    with pytest.raises(ValueError, match="images"):
        vaal_scores(model, np.zeros((2, 32, 32), np.uint8))


def test_vae_loss_by_hand():
    x = torch.zeros(2, 3, 2, 2)
    recon = torch.full_like(x, 0.5)  # squared error 0.25 per pixel
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # KL per frame: 0.5 * sum(exp(lv) + mu^2 - 1 - lv) = 0.5 * (1 + (2 - 1 - ln 2)) and 0
    kl = 0.5 * (1.0 + 1.0 - math.log(2.0)) / 2
    assert vae_loss(x, recon, mu, logvar, beta=2.0).item() == pytest.approx(0.25 + 2.0 * kl / 12)


def test_epoch_covers_both_sources_and_restarts_the_shorter():
    short, long_ = [torch.zeros(1)] * 2, [torch.ones(1)] * 5
    pairs = list(_epoch_pairs(short, long_))
    assert len(pairs) == 5 and all(u.item() == 1 for _, u in pairs)
    passes = []

    def gen():  # a callable source: a fresh generator per pass
        passes.append(1)
        yield from long_[:3]
    assert len(list(_epoch_pairs(gen, short))) == 3 and len(passes) == 1
    with pytest.raises(ValueError, match="unlabelled frames yield no batches"):
        list(_epoch_pairs(short, []))
    with pytest.raises(ValueError, match="second pass"):
        list(_epoch_pairs(iter(short), long_))  # a one-shot iterator cannot restart
