import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from googlenet.data import Augmented, EpochSampler, build_dataset, train_transform
from googlenet.data.fashion_mnist import FashionMNIST, read_idx
from googlenet.data.transforms import EIGVAL, EIGVEC, PAPER_INTERPOLATIONS, Lighting

from conftest import make_fashion_mnist, write_idx

MEAN, STD = [0.5] * 3, [0.25] * 3


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_read_gzipped_or_not(tmp_path, gz):
    folder = make_fashion_mnist(tmp_path, n_train=20, n_test=10, gz=gz)
    train = FashionMNIST(folder, "train", download=False)
    test = FashionMNIST(folder, "test", download=False)
    assert len(train) == 20 and len(test) == 10
    image, label = train[3]
    assert image.mode == "RGB" and image.size == (28, 28) and label == 3
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 2]).all() and pixels[10, 10, 0] == 250  # gray replicated; class-3 band


def test_idx_errors_are_clear(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x01abcd")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 2, 2)))
    (tmp_path / "cut").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "cut")


def test_missing_files_explain_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr("googlenet.data.fashion_mnist.DEBIAN_DIR", tmp_path / "no-debian")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(tmp_path / "empty", "train", download=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # not a fall-back to the system's copy
        FashionMNIST(tmp_path / "missing", "train")


def test_imagefolder_layout(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(tmp_path / split / cls / f"{i}.jpg")
    train = build_dataset("imagefolder", str(tmp_path), "train", subset=4)
    assert train.classes == ["cat", "dog"] and len(train) == 4
    with pytest.raises(FileNotFoundError, match="no test/ folder"):
        build_dataset("imagefolder", str(tmp_path), "test")


def _resize_step():
    return train_transform(32, MEAN, STD).transforms[0]


def test_random_sized_crops_keep_area_and_aspect_ranges():
    choice = _resize_step()
    assert isinstance(choice, v2.RandomChoice) and len(choice.transforms) == 4
    image = Image.new("RGB", (300, 200))
    areas, ratios = [], []
    for crop in choice.transforms:
        assert crop.scale == (0.08, 1.0) and crop.ratio == pytest.approx((3 / 4, 4 / 3))
        for _ in range(500):
            params = crop.make_params([image])
            areas.append(params["height"] * params["width"] / (300 * 200))
            ratios.append(params["width"] / params["height"])
    areas, ratios = np.array(areas), np.array(ratios)
    assert areas.min() >= 0.08 - 0.01 and areas.max() <= 1.0
    assert ratios.min() >= 0.75 - 0.02 and ratios.max() <= 4 / 3 + 0.02
    # The draws cover the ranges. (torchvision redraws crops that do not fit the image, so large areas are
    # rarer than a uniform draw would make them: docs/deviations.md.)
    assert areas.min() < 0.12 and areas.max() > 0.85 and 0.3 < np.median(areas) < 0.5
    assert ratios.min() < 0.8 and ratios.max() > 1.25


def test_interpolation_drawn_uniformly_from_the_papers_four(monkeypatch):
    choice = _resize_step()
    assert [t.interpolation for t in choice.transforms] == list(PAPER_INTERPOLATIONS)
    assert InterpolationMode.BOX in PAPER_INTERPOLATIONS  # area
    counts = [0, 0, 0, 0]
    for i, t in enumerate(choice.transforms):
        monkeypatch.setattr(t, "forward", lambda x, i=i: counts.__setitem__(i, counts[i] + 1) or x)
    for _ in range(4000):
        choice(Image.new("RGB", (8, 8)))
    assert all(880 < c < 1120 for c in counts), counts


def test_each_part_switches_off():
    plain = train_transform(
        32, MEAN, STD, random_resized_crop=False, random_interpolation=False, hflip=False, photometric=0, lighting=0
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    torch.testing.assert_close(plain(image), plain(image))  # nothing random left
    assert [type(t).__name__ for t in plain.transforms] == ["Resize", "ToImage", "ToDtype", "Normalize"]


def test_lighting_adds_the_pca_shift():
    torch.manual_seed(3)
    image = torch.full((3, 4, 4), 0.5)
    out = Lighting(0.1)(image)
    torch.manual_seed(3)
    alpha = torch.randn(3) * 0.1
    shift = torch.tensor(EIGVEC) @ (alpha * torch.tensor(EIGVAL))
    torch.testing.assert_close(out[:, 0, 0], 0.5 + shift)
    assert (out - out[:, :1, :1]).abs().max() == 0  # one shift per image


def test_augmentation_depends_only_on_seed_epoch_and_index(fmnist):
    data = Augmented(build_dataset("fashion_mnist", str(fmnist), "train"), train_transform(32, MEAN, STD), seed=5)
    torch.manual_seed(0)
    before = torch.rand(1)
    a, b = data[(7, 0)][0], data[(7, 0)][0]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, data[(7, 1)][0]) and not torch.equal(a, data[(8, 0)][0])
    torch.manual_seed(0)
    assert torch.equal(before, torch.rand(1))  # the caller's RNG is untouched


def test_epoch_sampler_yields_epoch_keys_and_skips():
    sampler = EpochSampler(range(20), num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    sampler.set_epoch(4)
    keys = list(sampler)
    assert len(keys) == 10 and all(epoch == 4 for _, epoch in keys)
    sampler.skip = 6
    assert list(sampler) == keys[6:] and len(sampler) == 4
