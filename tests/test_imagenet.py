"""ILSVRC-2012 read as it ships, from archives, a devkit and a CSV that the tests make: the official archives
(through torchvision.datasets.ImageNet, whose md5s are those of these files here), Kaggle's layout, and wnid
folders; the validation ground truth lands on the right classes, and `googlenet train` runs on each."""

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from googlenet.cli import main
from googlenet.data import build_dataset

# Three ILSVRC-2012 classes whose ILSVRC2012_IDs (devkit order) are not their sorted-wnid order.
WNIDS = {"n01530575": (3, "brambling, Fringilla montifringilla"), "n01440764": (7, "tench, Tinca tinca")}
WNIDS["n01443537"] = (1, "goldfish, Carassius auratus")
SORTED = sorted(WNIDS)
COLOURS = {w: (60 + 80 * i, 200 - 70 * i, 40 * i) for i, w in enumerate(SORTED)}  # an image shows its class
PER_CLASS = 12


def _jpeg(wnid: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), COLOURS[wnid]).save(out, "JPEG", quality=95)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _val_labels() -> list[str]:
    """The wnid of validation image k (1-based in file names), in an order unlike the classes'."""
    return [SORTED[(k * 2 + 1) % 3] for k in range(9)]


def _official(root: Path, monkeypatch) -> None:
    """ILSVRC2012_img_train.tar (a tar per wnid), ILSVRC2012_img_val.tar (flat) and the devkit, and the md5s
    torchvision checks set to theirs."""
    root.mkdir()
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as train:
        for wnid in WNIDS:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as per_class:
                for k in range(PER_CLASS):
                    _add(per_class, f"{wnid}_{k}.JPEG", _jpeg(wnid))
            _add(train, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as val:
        for k, wnid in enumerate(_val_labels()):
            _add(val, f"ILSVRC2012_val_{k + 1:08d}.JPEG", _jpeg(wnid))
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height"]
    synsets = np.zeros((len(WNIDS) + 1,), dtype=[(f, "O") for f in fields])
    for row, (wnid, (ident, words)) in enumerate(WNIDS.items()):
        synsets[row] = (ident, wnid, words, "a fish or a bird", 0, np.zeros((0,)), 0)
    synsets[len(WNIDS)] = (1001, "n00000001", "an inner node", "not a class", 3, np.array([1, 3, 7]), 2)
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    truth = "".join(f"{WNIDS[w][0]}\n" for w in _val_labels()).encode()
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as devkit:
        _add(devkit, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _add(devkit, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    md5 = {f: hashlib.md5((root / f).read_bytes()).hexdigest() for f in [p.name for p in root.iterdir()]}
    monkeypatch.setattr(
        "torchvision.datasets.imagenet.ARCHIVE_META",
        {
            "train": ("ILSVRC2012_img_train.tar", md5["ILSVRC2012_img_train.tar"]),
            "val": ("ILSVRC2012_img_val.tar", md5["ILSVRC2012_img_val.tar"]),
            "devkit": ("ILSVRC2012_devkit_t12.tar.gz", md5["ILSVRC2012_devkit_t12.tar.gz"]),
        },
    )


def _kaggle(root: Path, monkeypatch) -> None:
    """Kaggle's imagenet-object-localization-challenge: ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/} and the CSVs."""
    images = root / "ILSVRC/Data/CLS-LOC"
    for wnid in WNIDS:
        (images / "train" / wnid).mkdir(parents=True)
        for k in range(PER_CLASS):
            (images / "train" / wnid / f"{wnid}_{k}.JPEG").write_bytes(_jpeg(wnid))
    (images / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for k, wnid in enumerate(_val_labels()):
        name = f"ILSVRC2012_val_{k + 1:08d}"
        (images / "val" / f"{name}.JPEG").write_bytes(_jpeg(wnid))
        rows.append(f"{name},{wnid} 1 2 30 40 {wnid} 5 6 20 20")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {t}\n" for w, (_, t) in sorted(WNIDS.items())))


def _folders(root: Path, monkeypatch) -> None:
    for split, labels in (("train", [w for w in WNIDS for _ in range(PER_CLASS)]), ("val", _val_labels())):
        for k, wnid in enumerate(labels):
            (root / split / wnid).mkdir(parents=True, exist_ok=True)
            (root / split / wnid / f"{k}.JPEG").write_bytes(_jpeg(wnid))


def _shows(image: Image.Image) -> str:
    """The class whose colour an image shows."""
    pixel = np.asarray(image)[24, 32].astype(int)
    return min(COLOURS, key=lambda w: np.abs(pixel - COLOURS[w]).sum())


@pytest.mark.parametrize("layout", [_official, _kaggle, _folders])
def test_both_splits_read_with_the_val_ground_truth_mapped(tmp_path, monkeypatch, layout):
    layout(tmp_path / "imagenet", monkeypatch)
    root = str(tmp_path / "imagenet")
    train, val = build_dataset("imagenet", root, "train"), build_dataset("imagenet", root, "val")
    assert train.class_ids == val.class_ids == SORTED  # sorted wnids: Caffe's and torchvision's class order
    assert train.classes == ["tench", "goldfish", "brambling"]  # as torchvision's ImageNet weights name them
    assert len(train) == 3 * PER_CLASS and len(val) == 9
    assert all(_shows(val[k][0]) == SORTED[val[k][1]] for k in range(len(val)))
    for path, label in val.samples:  # each file keeps its ground truth (by name where the layout names them so)
        name = Path(path).stem
        if name.startswith("ILSVRC2012_val_"):
            assert SORTED[label] == _val_labels()[int(name[-8:]) - 1]
    assert all(_shows(train[k][0]) == SORTED[train[k][1]] for k in range(0, len(train), 5))
    assert build_dataset("imagenet", root, "train", decode=False)[0][0].data[:2] == b"\xff\xd8"


@pytest.mark.parametrize("layout", [_official, _kaggle])
def test_train_runs_on_imagenet_as_distributed(tmp_path, monkeypatch, layout, capsys):
    layout(tmp_path / "imagenet", monkeypatch)
    out = tmp_path / "run"
    args = ["train", "--config", "smoke", "--data.dataset", "imagenet", "--data.root", str(tmp_path / "imagenet")]
    assert main([*args, "--run.out", str(out), "--data.val_subset", "0"]) == 0
    from googlenet.model import load_model

    model = load_model(out / "model.safetensors")
    assert model.meta.class_ids == SORTED and model.meta.class_names == ["tench", "goldfish", "brambling"]


def test_resume_on_imagenet_jpegs_ends_with_the_same_weights(tmp_path, monkeypatch):
    """Exact resume with the JPEG pipeline (crops decoded alone by the region decoder): stopped after 3 of 4 steps and
    resumed, a run ends with the uninterrupted run's weights."""
    import torch
    from safetensors.torch import load_file

    from googlenet.data import images

    _kaggle(tmp_path / "imagenet", monkeypatch)
    calls = []
    if images._jpeg is not None:  # counted in this process (workers=0 here) that crops are decoded alone
        real = images._jpeg.decode_region
        monkeypatch.setattr(images._jpeg, "decode_region", lambda *a: calls.append(a) or real(*a))
    args = ["train", "--config", "smoke", "--data.dataset", "imagenet", "--data.root", str(tmp_path / "imagenet")]
    args += ["--data.val_subset", "0", "--run.checkpoint_every", "2", "--data.workers", "0"]
    assert main([*args, "--run.out", str(tmp_path / "full")]) == 0
    assert main([*args, "--run.out", str(tmp_path / "cut"), "--run.max_steps", "3"]) == 0
    assert main([*args, "--run.out", str(tmp_path / "cut"), "--resume"]) == 0
    full, cut = (load_file(tmp_path / run / "model.safetensors") for run in ("full", "cut"))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    assert images._jpeg is None or len(calls) >= 2 * 3 * PER_CLASS


def test_no_imagenet_or_a_damaged_archive_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no ILSVRC-2012"):
        build_dataset("imagenet", str(tmp_path / "empty"), "train")
    _official(tmp_path / "imagenet", monkeypatch)
    with open(tmp_path / "imagenet" / "ILSVRC2012_img_val.tar", "ab") as f:
        f.write(b"damage")
    with pytest.raises(ValueError, match=r"ILSVRC2012_img_val\.tar.*md5"):
        build_dataset("imagenet", str(tmp_path / "imagenet"), "val")
