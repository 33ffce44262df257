"""mIoU against a hand-computed confusion matrix, including an absent class."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rayal.train.metrics import confusion_matrix, miou, per_class_iou, pixel_accuracy


def test_confusion_and_miou_by_hand():
    # 4 classes; class 3 appears nowhere; 255 pixels are ignored
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 0]])
    conf = confusion_matrix(pred, target, num_classes=4, ignore_index=255)
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0], expected[0, 1] = 1, 1
    expected[1, 1] = 2
    expected[2, 2], expected[2, 0] = 1, 1
    assert np.array_equal(conf, expected)
    # IoU: class0 1/(2+2-1)=1/3, class1 2/(3+2-2)=2/3, class2 1/(1+2-1)=1/2, class3 absent
    iou = per_class_iou(conf)
    assert iou[:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(iou[3])
    assert miou(conf) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert miou(conf, ignore_absent=False) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 4)
    assert pixel_accuracy(conf) == pytest.approx(4 / 6)


def test_ignored_pixels_do_not_count_even_when_predicted():
    conf = confusion_matrix(np.array([1, 1]), np.array([11, 0]), num_classes=2, ignore_index=11)
    assert conf.sum() == 1 and conf[0, 1] == 1


def test_unknown_ids_are_named():
    with pytest.raises(ValueError, match=r"target has class ids outside \[0, 3\): \[7\]"):
        confusion_matrix(np.array([0, 1]), np.array([0, 7]), num_classes=3)
    with pytest.raises(ValueError, match="pred"):
        confusion_matrix(np.array([0, -1]), np.array([0, 1]), num_classes=3)


def test_aualc_against_a_hand_computed_curve():
    from rayal.train.metrics import aualc, budget_to_reach
    x = [0.1, 0.2, 0.4]
    y = [0.3, 0.5, 0.6]
    # trapezoids: 0.1 * (0.3 + 0.5) / 2 + 0.2 * (0.5 + 0.6) / 2 = 0.04 + 0.11 = 0.15
    assert aualc(x, y, full_miou=0.6) == pytest.approx(0.15 / (0.3 * 0.6))
    assert budget_to_reach(x, y, 0.6, 0.95) == 0.4     # 0.57 first reached at 0.4
    assert budget_to_reach(x, y, 0.6, 0.80) == 0.2
    assert budget_to_reach(x, y, 0.7, 0.95) is None
    with pytest.raises(ValueError):
        aualc([0.1], [0.3], 0.6)
    with pytest.raises(ValueError):
        aualc([0.2, 0.1], [0.3, 0.4], 0.6)
