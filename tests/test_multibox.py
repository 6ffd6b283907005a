"""MultiBox: the matching loss by hand, k-means priors, proposals inside the image."""

import math

import numpy as np
import pytest
import torch

from googlenet import build_model
from googlenet.detect.multibox import MultiBox, kmeans_priors, match, matching_loss, proposals


def test_matching_loss_by_hand_two_priors_one_box():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])
    logits = torch.tensor([[0.0, math.log(3)]])  # confidences 0.5 and 0.75
    truth = [torch.tensor([[0.0, 0.0, 0.5, 0.6]])]
    # Matching box 1: 0.15 * 0.01 - log 0.5 - log 0.25 = 2.0809; box 2: 0.15 * 0.91 - log 0.75 - log 0.5 = 1.1173.
    assert match(boxes[0], logits[0], truth[0]).tolist() == [-1, 0]
    expected = 0.3 / 2 * 0.91 - math.log(0.75) - math.log(1 - 0.5)
    assert matching_loss(boxes, logits, truth).item() == pytest.approx(expected, rel=1e-5)
    # With no ground truth every confidence is pushed to 0.
    assert matching_loss(boxes, logits, [torch.zeros(0, 4)]).item() == pytest.approx(
        -math.log(0.5) - math.log(0.25), rel=1e-5
    )


def test_priors_are_kmeans_centres():
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.4, 0.9, 0.95]])
    boxes = np.concatenate([c + rng.normal(0, 0.01, (200, 4)) for c in centres])
    priors = kmeans_priors(boxes, 2, seed=0)
    order = np.argsort(priors[:, 0])
    assert np.abs(priors[order] - centres).max() < 0.01
    with pytest.raises(ValueError, match="at least 5"):
        kmeans_priors(boxes[:3], 5)


def test_multibox_starts_at_its_priors_and_proposes_boxes_inside_the_image():
    priors = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]])
    model = MultiBox(build_model("googlenet_bn", num_classes=2, width=0.125, aux=False), priors).eval()
    boxes, logits = model(torch.randn(2, 3, 64, 64))
    assert boxes.shape == (2, 3, 4) and logits.shape == (2, 3)
    assert torch.allclose(boxes, priors.expand(2, -1, -1))
    found = proposals(model, torch.randn(2, 3, 64, 64), [(375, 500), (300, 300)], top=2)
    for got, (h, w) in zip(found, [(375, 500), (300, 300)], strict=True):
        assert got.shape[1] == 4 and 1 <= len(got) <= 2
        assert (got[:, :2] >= 0).all() and (got[:, 2] <= w).all() and (got[:, 3] <= h).all()
