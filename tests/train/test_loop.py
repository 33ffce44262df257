import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rayal.data.splits import labelled_split
from rayal.models import load_checkpoint
from rayal.train.dataset import LabelSpec, TrainingSet, eval_batches
from rayal.train.evaluate import confusion_over
from rayal.train.loop import BEST, LAST, Ema, epoch_order, segmentation_loss, train_loop
from rayal.train.metrics import confusion_matrix, miou

IGN = 255


def test_ignored_pixels_get_no_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    masks = torch.tensor([[[0, IGN], [2, IGN]]])
    segmentation_loss(logits, masks, IGN).backward()
    assert torch.all(logits.grad[0, :, 0, 1] == 0) and torch.all(logits.grad[0, :, 1, 1] == 0)
    assert torch.any(logits.grad[0, :, 0, 0] != 0) and torch.any(logits.grad[0, :, 1, 0] != 0)


def test_loss_value_against_hand_computation_with_class_weights():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])     # (1, 2, 1, 2)
    masks = torch.tensor([[[0, 1]]])
    w = torch.tensor([1.0, 3.0])
    l0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    l1 = -math.log(math.exp(1) / (math.exp(1) + 1))
    got = segmentation_loss(logits, masks, IGN, w)
    assert got.item() == pytest.approx((1 * l0 + 3 * l1) / 4, rel=1e-6)
    assert segmentation_loss(logits, masks, IGN).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_all_ignored_batch_is_a_zero_loss_not_nan():
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 3, 3), IGN), IGN)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_epoch_order_deals_every_rank_the_same_number_of_steps():
    n, b = 10, 3
    shards = [epoch_order(n, seed=1, epoch=0, batch_size=b, steps=None, rank=r, world=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 2
    items = sorted(i for s in shards for batch in s for i in batch)
    assert items == list(range(n))
    assert epoch_order(n, 1, 0, b, None, 0, 1) == epoch_order(n, 1, 0, b, None, 0, 1)
    assert epoch_order(n, 1, 1, b, None, 0, 1) != epoch_order(n, 1, 0, b, None, 0, 1)
    cycled = epoch_order(4, 1, 0, 3, steps=5, rank=0, world=1)
    assert len(cycled) == 5 and all(len(x) == 3 for x in cycled)


def test_ema_follows_the_warmup_decay():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = Ema(lin, decay=0.99)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)     # d = min(0.99, 2/11)
    assert ema.state["weight"].item() == pytest.approx(1 - 2 / 11)


def _full_set(config, n=None):
    split = labelled_split(config.data, "train")
    ids = split.frame_ids[:n] if n else split.frame_ids
    return TrainingSet(split, [LabelSpec(f) for f in ids], augment_config=config.train.augment,
                       seed=config.seed)


def test_training_learns_more_than_the_majority_class(tiny, tmp_path):
    config = tiny(epochs=6, lr=5e-3, ema_decay=None)
    val = labelled_split(config.data, "val")
    state = train_loop(config, _full_set(config), val, tmp_path / "ck", torch.device("cpu"))
    losses = [h["loss"] for h in state["history"]]
    assert losses[-1] < losses[0]
    masks = np.stack([val[i][1] for i in range(len(val))])
    majority = np.bincount(masks.ravel()).argmax()
    baseline = miou(confusion_matrix(np.full_like(masks, majority), masks, 8, IGN))
    model, meta = load_checkpoint(tmp_path / "ck" / BEST)
    conf = confusion_over(model, eval_batches(val, 4)(), 8, IGN, torch.device("cpu"))
    assert miou(conf) == pytest.approx(state["best_miou"], abs=1e-9) == pytest.approx(meta["val_miou"])
    assert state["best_miou"] > baseline + 0.05, (state["best_miou"], baseline)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tiny, tmp_path):
    config = tiny(epochs=3)
    val = labelled_split(config.data, "val")

    def crash(epoch, row):
        if epoch == 1:
            raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        train_loop(config, _full_set(config, 8), val, tmp_path / "a", torch.device("cpu"), on_epoch_end=crash)
    assert torch.load(tmp_path / "a" / LAST, weights_only=False)["state"]["epoch"] == 1
    seen = []
    resumed = train_loop(config, _full_set(config, 8), val, tmp_path / "a", torch.device("cpu"),
                         on_epoch_end=lambda e, r: seen.append(e))
    assert seen == [2]
    straight = train_loop(config, _full_set(config, 8), val, tmp_path / "b", torch.device("cpu"))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    a = torch.load(tmp_path / "a" / LAST, weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / LAST, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_at_the_first_epoch_without_gain(tiny, tmp_path):
    config = tiny(epochs=8, patience=1, lr=1e-12, ema_decay=None)
    state = train_loop(config, _full_set(config, 4), labelled_split(config.data, "val"),
                       tmp_path, torch.device("cpu"))
    scores = [h["val_miou"] for h in state["history"]]
    assert state["finished"] and len(scores) < 8     # the weights barely move: no gain soon
    assert all(scores[i] > max(scores[:i]) for i in range(1, len(scores) - 1))
    assert scores[-1] <= max(scores[:-1])
    assert state["best_miou"] == max(scores) and state["best_epoch"] == scores.index(max(scores))


def test_select_epoch_last_keeps_the_final_epoch_whatever_validation_says(tiny, tmp_path):
    """A fixed schedule: best.pt is the last epoch's (EMA) weights even when an earlier epoch
    scored higher on validation, so no validation frame chooses the model."""
    config = tiny(epochs=4, lr=5e-2, select_epoch="last")
    state = train_loop(config, _full_set(config, 4), labelled_split(config.data, "val"),
                       tmp_path / "last", torch.device("cpu"))
    scores = [h["val_miou"] for h in state["history"]]
    assert len(scores) == 4 and state["best_epoch"] == 3 and state["best_miou"] == scores[-1]
    last = torch.load(tmp_path / "last" / LAST, weights_only=False)["ema"]
    kept, meta = load_checkpoint(tmp_path / "last" / BEST)
    assert meta["epoch"] == 3
    assert all(torch.equal(v, last[k]) for k, v in kept.state_dict().items())
    best = train_loop(tiny(epochs=4, lr=5e-2), _full_set(config, 4),
                      labelled_split(config.data, "val"), tmp_path / "best", torch.device("cpu"))
    assert [h["val_miou"] for h in best["history"]] == scores    # the same training
    assert best["best_miou"] == max(scores) and best["best_epoch"] == scores.index(max(scores))


def test_select_epoch_last_refuses_early_stopping(tiny):
    with pytest.raises(ValueError, match=r"select_epoch 'last' .* train.patience is 3"):
        tiny(select_epoch="last", patience=3)


def test_warm_start_begins_from_the_given_weights(tiny, tmp_path):
    config = tiny(epochs=1, lr=1e-12, ema_decay=None)
    val = labelled_split(config.data, "val")
    train_loop(config, _full_set(config, 4), val, tmp_path / "a", torch.device("cpu"))
    init = {k: v + 0.01 if v.dtype.is_floating_point else v
            for k, v in load_checkpoint(tmp_path / "a" / BEST)[0].state_dict().items()}
    train_loop(config, _full_set(config, 4), val, tmp_path / "b", torch.device("cpu"), init_state=init)
    after = torch.load(tmp_path / "b" / LAST, weights_only=False)["model"]
    params = dict(load_checkpoint(tmp_path / "b" / BEST)[0].named_parameters())
    for name in params:
        assert torch.allclose(after[name], init[name], atol=1e-6), name


def test_class_weights_of_the_wrong_length_name_the_field(tiny, tmp_path):
    config = tiny(class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="train.class_weights"):
        train_loop(config, _full_set(config, 2), labelled_split(config.data, "val"), tmp_path, torch.device("cpu"))
