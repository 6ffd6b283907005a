import numpy as np
import pytest
import torch
from PIL import Image

from googlenet.data import Augmented, EpochSampler, build_dataset, train_transform
from googlenet.data.fashion_mnist import FashionMNIST, read_idx

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


def test_augmentation_depends_only_on_seed_epoch_and_index(fmnist):
    data = Augmented(build_dataset("fashion_mnist", str(fmnist), "train"), train_transform(32, MEAN, STD), seed=5)
    torch.manual_seed(0)
    before = torch.rand(1)
    (a, colour), (b, again) = data[(7, 0)][0], data[(7, 0)][0]
    assert torch.equal(a, b) and torch.equal(colour, again)
    assert not torch.equal(colour, data[(7, 1)][0][1]) and not torch.equal(colour, data[(8, 0)][0][1])
    torch.manual_seed(0)
    assert torch.equal(before, torch.rand(1))  # the caller's RNG is untouched


def test_epoch_sampler_yields_epoch_keys_and_skips():
    sampler = EpochSampler(range(20), num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    sampler.set_epoch(4)
    keys = list(sampler)
    assert len(keys) == 10 and all(epoch == 4 for _, epoch in keys)
    sampler.skip = 6
    assert list(sampler) == keys[6:] and len(sampler) == 4
