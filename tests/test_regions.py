"""R-CNN's context-padded region warp and its window labels."""

import numpy as np
import pytest
import torch

from googlenet.detect.regions import context_boxes, label_windows, warp_regions


def test_context_padding_geometry():
    box = torch.tensor([[100.0, 50.0, 200.0, 250.0]])  # 100 x 200
    grown = context_boxes(box, 224, 16)[0]
    scale = (224 - 32) / torch.tensor([100.0, 200.0])  # output px per input px: the box fills 192 of 224
    assert torch.allclose(grown[:2], box[0, :2] - 16 / scale) and torch.allclose(grown[2:], box[0, 2:] + 16 / scale)


def test_warp_puts_the_box_inside_the_padding():
    # A horizontal ramp: each pixel holds its x (its centre lies at x + 0.5 in continuous coordinates).
    height, width, size, pad = 300, 400, 64, 8
    image = torch.arange(width, dtype=torch.float32).expand(3, height, width).clone()
    box = torch.tensor([[100.0, 40.0, 228.0, 200.0]])
    out = warp_regions(image, box, size, pad)
    assert out.shape == (1, 3, size, size)
    per_px = (228 - 100) / (size - 2 * pad)  # input px per output px along x
    # Output column j covers input x from x1 + (j - pad) * per_px; its mean value is that span's centre - 0.5.
    for j in (0, pad, size // 2, size - pad - 1, size - 1):
        expected = 100 + (j - pad + 0.5) * per_px - 0.5
        assert out[0, 0, size // 2, j].item() == pytest.approx(expected, abs=1e-3)
    # The warp is anisotropic: every row of a ramp in x is the same.
    assert torch.allclose(out[0, 0, 0], out[0, 0, -1])


def test_context_outside_the_image_reads_the_mean():
    image = torch.ones(3, 100, 100)  # normalised: zero is the mean
    out = warp_regions(image, torch.tensor([[0.0, 0.0, 40.0, 40.0]]), 32, 8)
    assert out[0, :, :3, :3].abs().max() == 0  # well outside the image: the mean
    assert torch.allclose(out[0, :, 8:, 8:], torch.ones(3, 24, 24))  # the box itself


def test_window_labels():
    truths = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], np.float32)
    windows = np.array([[0, 0, 100, 90], [210, 200, 300, 300], [0, 0, 30, 30], [150, 150, 250, 250]], np.float32)
    assert label_windows(windows, truths, np.array([4, 7])).tolist() == [5, 8, 0, 0]
    assert label_windows(windows, truths[:0], np.zeros(0)).tolist() == [0, 0, 0, 0]
