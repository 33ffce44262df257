"""SimCLR (rayal.train.simclr): the NT-Xent loss against a hand computation, the views, and a
seeded training run that learns (loss falls) and repeats itself exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rayal.train.simclr import embed_frames, nt_xent_loss, train_simclr, two_views


def test_nt_xent_matches_a_hand_computation():
    # 2 frames, unit vectors: view pairs (a1, a2) and (b1, b2); tau = 0.5
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    views = [np.array(v) for v in ([1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6])]
    positive = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):   # Eq. 1: -log exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau)
        sims = {k: float(views[i] @ views[k]) / 0.5 for k in range(4) if k != i}
        total += -(sims[positive[i]] - math.log(sum(math.exp(s) for s in sims.values())))
    assert float(nt_xent_loss(z1, z2, 0.5)) == pytest.approx(total / 4, rel=1e-6)


def test_nt_xent_is_low_for_aligned_views_and_refuses_bad_shapes():
    z = torch.eye(4) * 3.0
    aligned = float(nt_xent_loss(z, z.clone(), 0.1))
    swapped = float(nt_xent_loss(z, z.roll(1, dims=0), 0.1))
    assert aligned < 0.01 < swapped
    with pytest.raises(ValueError, match="N >= 2"):
        nt_xent_loss(torch.ones(1, 3), torch.ones(1, 3), 0.5)
    with pytest.raises(ValueError, match="one shape"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 4), 0.5)


def test_two_views_differ_and_keep_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 24, 32)
    a, b = two_views(x, (16, 20))
    assert a.shape == b.shape == (3, 3, 16, 20)
    assert not torch.allclose(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def _two_kinds(n: int = 16, size: int = 16) -> np.ndarray:
    """Half the frames horizontal stripes, half vertical, random colours."""
    rng = np.random.default_rng(0)
    frames = np.zeros((n, size, size, 3), np.uint8)
    stripes = (np.arange(size) // 2 % 2).astype(bool)
    for i in range(n):
        colour = rng.integers(60, 255, 3)
        mask = stripes[:, None] if i % 2 else stripes[None, :]
        frames[i] = np.where(np.broadcast_to(mask, (size, size))[..., None], colour, 0)
    return frames


def _train(seed: int, epochs: int = 12):
    return train_simclr(_two_kinds(), encoder="resnet18", depth=3, size=(16, 16), epochs=epochs,
                        batch_size=8, lr=1e-3, temperature=0.5, projection_dim=16, seed=seed)


def test_training_lowers_the_loss_and_is_seeded():
    net, losses = _train(0)
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    again, losses_again = _train(0)
    assert losses_again == losses
    other, _ = _train(1, epochs=1)
    x = torch.from_numpy(_two_kinds()).permute(0, 3, 1, 2).float() / 255
    emb = embed_frames(net, x, (16, 16))
    assert emb.shape == (16, net.encoder.out_channels[-1])
    torch.testing.assert_close(emb, embed_frames(again, x, (16, 16)))
    assert not torch.allclose(emb, embed_frames(other, x, (16, 16)))


def test_too_few_frames_are_refused():
    with pytest.raises(ValueError, match="at least 2 frames"):
        train_simclr(_two_kinds()[:1], encoder="resnet18", depth=3, size=(16, 16), epochs=1,
                     batch_size=8, lr=1e-3, temperature=0.5, projection_dim=8, seed=0)
