"""Issue 8: bad data never stops a long run, an interrupted run loses nothing, untrusted files cannot run code,
and every bad input gets a clear error. docs/reliability.md lists each fault and what happens."""

import errno
import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from googlenet import build_model, save_weights
from googlenet.cli import main
from googlenet.data.detection import read_xml
from googlenet.data.images import UnreadableImage, load_image
from googlenet.model import RegionHead
from googlenet.train import config as train_config
from googlenet.train.checkpoint import RunStopped, load_checkpoint, save_checkpoint
from googlenet.train.classification import Classification
from googlenet.train.loop import train
from test_train import _weights, tiny

from conftest import make_fashion_mnist

# The in-suite fuzz runs are bounded and repeatable; FUZZ_EXAMPLES=20000 makes a long, random one (docs/reliability.md).
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES or 200,
    derandomize=not FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _pixels(height=20, width=30, seed=0):
    """A smooth colour gradient with a little noise (JPEG keeps it close)."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 16, (height, width, 3))
    return (np.stack([255 * x / width, 255 * y / height, 128 + 0 * x], -1) * 0.9 + noise).astype(np.uint8)


@pytest.mark.parametrize(
    "mode,suffix",
    [("1", ".png"), ("L", ".png"), ("P", ".png"), ("RGBA", ".png"), ("CMYK", ".jpg"), ("CMYK", ".tiff"),
     ("I;16", ".png"), ("LA", ".png"), ("I", ".tiff"), ("F", ".tiff")],
)  # fmt: skip
def test_every_image_mode_becomes_8_bit_rgb(tmp_path, mode, suffix):
    rgb = Image.fromarray(_pixels())
    image = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257) if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / f"image{suffix}"
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (30, 20)
    expected = np.asarray(rgb.convert("L" if mode in ("I;16", "I", "F") else mode).convert("RGB"), np.int16)
    error = np.abs(np.asarray(loaded, np.int16) - expected).mean()
    assert error < (12 if suffix == ".jpg" else 0.01), error  # JPEG is lossy; the rest are exact


def test_exif_orientation_is_respected(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    upright = np.asarray(load_image(tmp_path / "turned.jpg"))
    assert upright.shape == (40, 20, 3)  # displayed portrait
    assert upright[5, 10, 0] > 200 and upright[35, 10, 0] < 50  # the stored left half is now on top


def _png_header_only(width, height):
    """A PNG that claims width x height pixels and holds almost none: a decompression bomb's header."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 30_000])  # just over Pillow's limit (where it only warns), and far over
def test_decompression_bombs_are_refused_by_the_pixel_limit(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    assert side * side > Image.MAX_IMAGE_PIXELS
    with pytest.raises(UnreadableImage, match="decompression bomb") as caught:
        load_image(path)
    assert caught.value.path == str(path) and len(str(caught.value).splitlines()) == 1


def broken_files(folder: Path) -> dict[str, bytes]:
    """One of each kind of bad image file: truncated, zero bytes, not an image, damaged header."""
    buffer = io.BytesIO()
    Image.fromarray(_pixels(64, 64)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    files = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.jpg": b"",
        "notes.jpg": b"these are not pixels\n",
        "damaged.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_each_kind_of_broken_file_is_one_clear_error(tmp_path):
    for name in broken_files(tmp_path):
        with pytest.raises(UnreadableImage) as caught:
            load_image(tmp_path / name)
        message = str(caught.value)
        assert caught.value.path == str(tmp_path / name) and len(message.splitlines()) == 1, message


VOC = """<annotation><filename>{filename}</filename>
<size><width>{width}</width><height>{height}</height><depth>3</depth></size>
<object><name>{name}</name><difficult>0</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>
</annotation>"""
GOOD = dict(filename="a.jpg", width=100, height=80, name="shirt", xmin=11, ymin=21, xmax=40, ymax=60)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"xmax": "abc"}, "<xmax>"),
        ({"width": ""}, "<width>"),
        ({"ymin": "nan"}, "<ymin>"),
        ({"height": "0"}, "<size>"),
        ({"xmax": "5"}, "xmax < xmin"),
        ({"name": " "}, "<name>"),
    ],
)
def test_malformed_annotation_names_the_file_and_the_field(tmp_path, change, field):
    path = tmp_path / "a.xml"
    path.write_text(VOC.format(**{**GOOD, **change}))
    with pytest.raises(ValueError, match=field) as caught:
        read_xml(path)
    assert str(path) in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_annotation_cannot_point_outside_its_folder_or_expand_entities(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(VOC.format(**{**GOOD, "filename": "../../etc/passwd"}))
    assert read_xml(path).filename == "passwd"
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    path.write_text(f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "lol">{laughs}]><annotation>&l9;</annotation>')
    with pytest.raises(ValueError, match="not a readable VOC XML"):  # expat's amplification limit
        read_xml(path)


def _seed_images() -> list[bytes]:
    """Small valid files of the formats ImageFolder takes, to mutate."""
    seeds = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "CMYK"), ("WEBP", "RGB")):
        buffer = io.BytesIO()
        Image.fromarray(_pixels(12, 16)).convert(mode).save(buffer, format=fmt)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seed_images()


@st.composite
def mutated(draw, seeds):
    """A seed file with a few bytes changed, inserted or cut: mostly-valid files reach deep into the decoders."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif len(data) > 1:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damaged metadata it skips
@FUZZ
@given(data=mutated(SEEDS))
def test_fuzz_image_loading_gives_rgb_or_one_clear_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.img"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except UnreadableImage as err:
            assert err.path == str(path) and len(str(err).splitlines()) == 1
        else:
            assert image.mode == "RGB" and image.width > 0 and image.height > 0


VALUES = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.just(""),
)


@st.composite
def annotations(draw):
    """VOC XML with drawn field values, elements dropped, bytes garbled or the text cut short."""
    text = VOC.format(**{k: draw(VALUES) if draw(st.booleans()) else v for k, v in GOOD.items()})
    for tag in draw(st.lists(st.sampled_from(["size", "width", "bndbox", "xmin", "name", "object"]), max_size=2)):
        text = text.replace(f"<{tag}>", "<dropped>", 1).replace(f"</{tag}>", "</dropped>", 1)
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


@FUZZ
@given(data=annotations())
def test_fuzz_annotation_parsing_gives_boxes_or_one_clear_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.xml"
        path.write_bytes(data)
        try:
            annotation = read_xml(path)
        except ValueError as err:
            assert str(path) in str(err) and len(str(err).splitlines()) == 1, str(err)
        else:
            assert annotation.width >= 1 and annotation.height >= 1 and np.isfinite(annotation.boxes).all()
            assert (annotation.boxes[:, 2:] >= annotation.boxes[:, :2]).all()


# --- Training faults ------------------------------------------------------------------------------------------


def _image_folder(root: Path, per_class: int, broken: dict[str, int]) -> dict[str, list[str]]:
    """root/{train,val}/{a,b}/*.png: two learnable classes, with broken[split] of the files damaged."""
    damaged = {}
    for split in ("train", "val"):
        for label, colour in (("a", (220, 30, 30)), ("b", (30, 30, 220))):
            (root / split / label).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (16, 16), colour).save(root / split / label / f"{i:03d}.png")
        kinds = broken_files(root / split / "a")  # replaces nothing: new names, damaged contents
        names = sorted(kinds)[: broken[split]]
        for name in set(kinds) - set(names):
            (root / split / "a" / name).unlink()
        damaged[split] = sorted(str(root / split / "a" / name) for name in names)
    return damaged


def _folder_config(root, out, **extra):
    overrides = {
        "data.dataset": "imagefolder",
        "data.root": str(root),
        "data.val_split": "val",
        "data.workers": "1",  # the files are read in a worker process, and reported from the main one
        "optim.epochs": "1",
        "run.checkpoint_every": "0",
        "run.threads": "1",
        **extra,
    }
    return train_config.load(None, tiny(root, out, **overrides))


def test_five_percent_broken_files_train_and_are_reported_exactly(tmp_path, capfd):
    damaged = _image_folder(tmp_path / "data", per_class=38, broken={"train": 4, "val": 2})  # 4 of 80, 2 of 40
    results = train(_folder_config(tmp_path / "data", tmp_path / "run"))
    assert results["step"] == 5 and results["unreadable"] == damaged
    assert json.loads((tmp_path / "run" / "results.json").read_text())["unreadable"] == damaged
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    listed = [r for r in records if r["kind"] == "unreadable"]
    assert listed and {k: listed[-1][k] for k in ("train", "val")} == damaged
    warned = capfd.readouterr().err
    for path in damaged["train"] + damaged["val"]:
        assert "skipped an unreadable" in warned and path in warned, path


def test_more_broken_files_than_allowed_stop_with_one_clear_message(tmp_path):
    _image_folder(tmp_path / "data", per_class=38, broken={"train": 4, "val": 0})
    cfg = _folder_config(tmp_path / "data", tmp_path / "run", **{"data.max_bad_fraction": "0.04"})
    with pytest.raises(RunStopped, match=r"4 of 80 train items are unreadable \(5.0%, more than") as caught:
        train(cfg)
    assert len(str(caught.value).splitlines()) == 1 and caught.value.code == 1


def test_evaluate_skips_and_counts_broken_files(tmp_path, capfd):
    damaged = _image_folder(tmp_path / "data", per_class=4, broken={"train": 0, "val": 3})
    model = build_model("googlenet_bn", num_classes=2, width=0.125)
    model.meta.input_size, model.meta.class_names = 32, ["a", "b"]
    weights = save_weights(model, tmp_path / "w.safetensors")
    args = ["evaluate", "--checkpoint", str(weights), "--data", str(tmp_path / "data" / "val"), "--workers", "1"]
    assert main([*args, "--json"]) == 0
    captured = capfd.readouterr()
    result = json.loads(captured.out)
    assert result["images"] == 8 and result["unreadable"] == 3
    assert all(path in captured.err for path in damaged["val"])


KILL_RUN = {"optim.epochs": "4", "run.checkpoint_every": "1", "run.threads": "1"}  # 24 steps, a checkpoint each


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The tiny Fashion-MNIST stand-in and the weights of one uninterrupted run over it."""
    root = make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))
    out = tmp_path_factory.mktemp("uninterrupted")
    train(train_config.load(None, tiny(root, out, **KILL_RUN)))
    return root, _weights(out)


def _start(root, out, resume=False, **extra):
    overrides = tiny(root, out, **{**KILL_RUN, **extra})
    command = [sys.executable, "-m", "googlenet", "train", *[f"--{k}={v}" for k, v in overrides.items()]]
    return subprocess.Popen(
        [*command, *(["--resume"] if resume else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a job on a cluster: signals reach its workers too
    )


def _wait_for_step(process, out, step, timeout=120):
    """Until metrics.jsonl logs `step` (True) or the run ends (False)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        metrics = out / "metrics.jsonl"
        if metrics.exists() and f'"kind": "step", "step": {step},' in metrics.read_text():
            return True
        time.sleep(0.01)
    return False


def _same_weights(out, expected):
    got = _weights(out)
    assert got.keys() == expected.keys()
    for key in got:
        assert torch.equal(got[key], expected[key]), key


def test_sigkill_at_random_moments_resumes_to_the_same_weights(uninterrupted, tmp_path):
    root, expected = uninterrupted
    out, draw = tmp_path / "killed", random.Random(8)
    step = 0
    for trial in range(3):  # killed three times, each at a random step and a random moment within it
        step = draw.randint(step + 1, step + 6)
        process = _start(root, out, resume=trial > 0)
        assert _wait_for_step(process, out, step), process.communicate()[1][-2000:]
        time.sleep(draw.uniform(0, 0.2))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if (out / "checkpoint.pt").exists():
            assert load_checkpoint(out / "checkpoint.pt")["step"] >= step - 1  # loadable, at most a step behind
    results = train(train_config.load(None, tiny(root, out, **KILL_RUN)), resume=True)
    assert results["step"] == 24
    _same_weights(out, expected)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_a_checkpoint_and_exit_cleanly(uninterrupted, tmp_path, number):
    root, expected = uninterrupted
    out = tmp_path / "stopped"
    process = _start(root, out, **{"run.checkpoint_every": "0", "data.workers": "1"})  # only the signal saves
    assert _wait_for_step(process, out, 3)
    os.killpg(process.pid, number)  # to the whole group, workers included, as a cluster or Ctrl-C does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + number and "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]  # the one line that says what happened
    assert last.startswith(f"googlenet: stopped by {signal.Signals(number).name} at step ") and "--resume" in last
    stopped_at = int(last.split(" at step ")[1].split(";")[0])
    assert stopped_at >= 3 and load_checkpoint(out / "checkpoint.pt")["step"] == stopped_at
    if number == signal.SIGTERM:  # and the run goes on from there to the uninterrupted run's weights
        train(train_config.load(None, tiny(root, out, **KILL_RUN)), resume=True)
        _same_weights(out, expected)


class NaNLoss(Classification):
    """Classification whose loss is NaN at the given (1-based) steps, as a diverging run's would be."""

    def __init__(self, steps):
        self.steps, self.calls = set(steps), 0

    def loss(self, net, images, targets, cfg):
        self.calls += 1
        loss, main, output = super().loss(net, images, targets, cfg)
        return (loss * float("nan") if self.calls in self.steps else loss), main, output


def test_a_non_finite_loss_skips_the_step_and_is_logged(uninterrupted, tmp_path):
    root, _ = uninterrupted
    before = tmp_path / "before"
    train(train_config.load(None, tiny(root, before, **{"run.max_steps": "2"})))
    train(train_config.load(None, tiny(root, tmp_path / "nan", **{"run.max_steps": "3"})), task=NaNLoss({3}))
    _same_weights(tmp_path / "nan", _weights(before))  # step 3 moved neither the weights nor their average
    records = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in records if r["kind"] == "skipped"] == [
        {"kind": "skipped", "step": 3, "epoch": 0, "reason": "non-finite loss nan"}
    ]


def test_non_finite_losses_in_a_row_stop_the_run_with_the_last_good_checkpoint(uninterrupted, tmp_path):
    root, _ = uninterrupted
    cfg = train_config.load(None, tiny(root, tmp_path / "nan", **{"run.max_nonfinite": "3"}))  # checkpoint every 2
    with pytest.raises(RunStopped, match=r"3 non-finite losses in a row .* the last at step 7; .* at step 4\)"):
        train(cfg, task=NaNLoss(range(5, 100)))
    state = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {}, "optimizer": {}, "step": 1, "epoch": 0, "rng": {}}, path)
    big = {"model": {"w": torch.zeros(100_000)}, "optimizer": {}, "step": 2, "epoch": 0, "rng": {}}
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, a write fails as on a full disk
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, limit[1]))
    try:
        with pytest.raises(OSError, match=r"could not write .*checkpoint.pt .*; the previous one is kept"):
            save_checkpoint(big, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, previous)
    assert load_checkpoint(path)["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_run_goes_on_when_the_disk_fills_and_keeps_its_last_checkpoint(uninterrupted, tmp_path, monkeypatch, capfd):
    root, _ = uninterrupted
    real = torch.save

    def full_disk(state, f):
        if state["step"] > 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(state, f)

    monkeypatch.setattr(torch, "save", full_disk)
    results = train(train_config.load(None, tiny(root, tmp_path / "full")))
    assert results["step"] == 12 and load_checkpoint(tmp_path / "full" / "checkpoint.pt")["step"] == 2
    assert "No space left on device); the previous one is kept" in capfd.readouterr().err
    assert not list((tmp_path / "full").glob(".*.tmp"))


# --- Untrusted files ---------------------------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_checkpoint_that_would_run_code_is_refused(uninterrupted, tmp_path):
    root, _ = uninterrupted
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": _RunsCode(tmp_path / "pwned"), "step": 1}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"refused, it holds more than tensors \(posix.system\)") as caught:
        train(train_config.load(None, tiny(root, out)), resume=True)
    assert len(str(caught.value).splitlines()) == 1 and not (tmp_path / "pwned").exists()


def test_a_damaged_or_foreign_checkpoint_is_one_line(uninterrupted, tmp_path):
    root, _ = uninterrupted
    out = tmp_path / "run"
    train(train_config.load(None, tiny(root, out, **{"run.max_steps": "2"})))
    other = train_config.load(None, tiny(root, out, **{"model.width": "0.25"}))
    with pytest.raises(ValueError, match=r"saved by another model \(googlenet_bn, width 0.125\)") as caught:
        train(other, resume=True)
    assert len(str(caught.value).splitlines()) == 1
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or not a PyTorch file") as caught:
        train(train_config.load(None, tiny(root, out)), resume=True)
    assert len(str(caught.value).splitlines()) == 1


# --- The command line ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid classifier and region classifier, a damaged weights file, an image, a VOC-layout folder, a run
    folder with a checkpoint that runs code."""
    folder = tmp_path_factory.mktemp("cli")
    model = build_model("googlenet_bn", num_classes=10, width=0.125)
    model.meta.input_size = 32
    weights = save_weights(model, folder / "tiny.safetensors")
    regions = build_model("googlenet_bn", num_classes=3, width=0.125, aux=False)
    regions.meta.input_size, regions.meta.task = 32, "regions"
    regions.meta.class_names = ["background", "shirt", "bag"]
    regions.meta.head = RegionHead(context=3, proposals="ss2x", fg_iou=0.5)
    save_weights(regions, folder / "regions.safetensors")
    (folder / "damaged.safetensors").write_bytes(weights.read_bytes()[:100])
    Image.fromarray(_pixels()).save(folder / "image.png")
    (folder / "evil").mkdir()
    torch.save({"model": _RunsCode(folder / "pwned")}, folder / "evil" / "checkpoint.pt")
    (folder / "config.json").write_text("{not yaml: [")
    (folder / "broken.yaml").write_text("model: [1\n")
    (folder / "voc" / "ImageSets" / "Main").mkdir(parents=True)  # a detection dataset with one image
    (folder / "voc" / "JPEGImages").mkdir()
    (folder / "voc" / "Annotations").mkdir()
    Image.fromarray(_pixels(80, 100)).save(folder / "voc" / "JPEGImages" / "a.jpg")
    (folder / "voc" / "Annotations" / "a.xml").write_text(VOC.format(**GOOD))
    for split in ("train", "test"):
        (folder / "voc" / "ImageSets" / "Main" / f"{split}.txt").write_text("a\n")
    return folder


# Each bad command, with what its one line must say: a row fails when the check it names is gone (another check
# further on would give another message). Detection commands get a region classifier, so that it is the named
# check that answers, not "no region classifier".
BAD_COMMANDS = [
    (["train", "--config", "does-not-exist.yaml"], "config file not found"),
    (["train", "--config", "{f}/broken.yaml"], "is not valid YAML"),
    (["train", "--config", "{f}"], "config file not found"),
    (["train", "--optim.lr", "-1"], "optim.lr must be positive"),
    (["train", "--optim.lr", "fast"], "--optim.lr: expected float"),
    (["train", "--run.checkpoint_every", "-5"], "run.checkpoint_every must be 0 or more"),
    (["train", "--model.dropout", "1.5"], "model.dropout must be in [0, 1)"),
    (["train", "--data.max_bad_fraction", "2"], "data.max_bad_fraction must be in [0, 1]"),
    (["train", "--run.max_nonfinite", "0"], "run.max_nonfinite must be at least 1"),
    (["train", "--data.dataset", "cifar"], "data.dataset must be one of"),
    (["train", "--task", "segment"], "argument --task: invalid choice"),
    (["train", "--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
    (["train", "--data.dataset", "imagefolder", "--data.root", "{f}/nowhere", "--run.out", "{f}/out"], "no train/"),
    (["train", "--resume", "--out", "{f}/evil"], "loading it could run code"),
    (["evaluate", "--crops", "7", "--checkpoint", "{f}/tiny.safetensors"], "argument --crops: invalid choice"),
    (["evaluate", "--checkpoint", "{f}/missing.safetensors"], "weights not found"),
    (["evaluate", "--checkpoint", "{f}/damaged.safetensors"], "is not a readable safetensors file"),
    (["evaluate", "--checkpoint", "{f}/evil/checkpoint.pt"], "is no exported TorchScript model"),
    (["evaluate", "--checkpoint", "{f}/tiny.safetensors", "--limit", "-1"], "--limit"),
    (["evaluate", "--checkpoint", "{f}/tiny.safetensors", "--data", "{f}/nowhere"], "not a folder"),
    (["predict", "--checkpoint", "{f}/tiny.safetensors", "missing.jpg"], "no such image file: missing.jpg"),
    (["predict", "--checkpoint", "{f}/tiny.safetensors", "{f}/config.json"], "config.json"),
    (["predict", "--checkpoint", "{f}/tiny.safetensors", "--topk", "0", "{f}/image.png"], "--topk must be at least 1"),
    (["predict", "--checkpoint", "{f}/tiny.safetensors", "--crops", "7", "{f}/image.png"], "--crops: invalid choice"),
    (["predict", "--checkpoint", "{f}/damaged.safetensors", "{f}/image.png"], "is not a readable safetensors file"),
    (["predict", "{f}/image.png"], "the following arguments are required: --checkpoint"),
    (["summary", "--width", "0"], "width"),
    (["summary", "--input-size", "16"], "input"),
    (["data", "scenes", "--out", "{f}/scenes", "--count", "0"], "--count"),
    (["data", "scenes", "--out", "{f}/scenes", "--split", "val"], "argument --split: invalid choice"),
    (["detect", "proposals", "--data", "{f}/nowhere"], "nowhere"),
    (["detect", "proposals", "--data", "{f}/voc", "--method", "multibox"], "need --multibox CKPT"),
    (["detect", "proposals", "--data", "{f}/voc", "--limit", "-2"], "--limit must be >= 0"),
    (["detect", "evaluate", "--checkpoint", "{f}/regions.safetensors", "--data", "{f}/voc", "--nms", "2"], "--nms"),
    (["detect", "evaluate", "--checkpoint", "{f}/damaged.safetensors", "--data", "{f}/voc"], "not a readable"),
    (["detect", "evaluate", "--checkpoint", "{f}/tiny.safetensors", "--data", "{f}/voc"], "not a region classifier"),
    (["detect", "predict", "--checkpoint", "{f}/regions.safetensors", "missing.jpg"], "image not found"),
    (
        ["detect", "predict", "--checkpoint", "{f}/regions.safetensors", "{f}/image.png", "--threshold", "2"],
        "--threshold must be in [0, 1]",
    ),
    (["detect", "fit-bbox", "--checkpoint", "{f}/missing.safetensors", "--data", "{f}/voc"], "weights file not found"),
    (
        ["detect", "fit-bbox", "--checkpoint", "{f}/regions.safetensors", "--data", "{f}/voc", "--iou", "1.5"],
        "--iou in (0, 1)",
    ),
    (["detect", "fit-svm", "--checkpoint", "{f}/missing.safetensors", "--data", "{f}/voc"], "weights file not found"),
    (["detect", "fit-svm", "--checkpoint", "{f}/regions.safetensors", "--data", "{f}/voc", "--c", "0"], "--c > 0"),
    (
        ["detect", "evaluate", "--checkpoint", "{f}/regions.safetensors", "--data", "{f}/voc", "--svm"],
        "fit them with googlenet detect fit-svm",
    ),
    (["detect", "train", "--config", "does-not-exist.yaml"], "config file not found"),
    (["detect", "train", "--data.dataset", "fashion_mnist"], "the region classifier trains on detection data"),
    (["detect", "train", "--config", "multibox_scenes"], "'multibox' config, not 'regions'"),
    (["detect", "train", "--detect.foreground", "1.5"], "detect.foreground must be between 0 and 1"),
    (["detect", "train-multibox", "--data.dataset", "voc"], "data.root is required"),
    (["detect", "train-multibox", "--multibox.nms", "0"], "multibox.nms must be in (0, 1]"),
    (["detect", "train-multibox", "--multibox.tiles", "0"], "multibox.tiles must be at least 1"),
    (["weights", "import", "{f}/tiny.safetensors"], "is no .caffemodel"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
]


@pytest.mark.parametrize("args,says", BAD_COMMANDS, ids=[" ".join(row[0]) for row in BAD_COMMANDS])
def test_every_command_answers_bad_arguments_with_one_line(files, capsys, args, says):
    try:
        code = main([arg.format(f=files) for arg in args])
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "error" in err, err
    assert says in err, err
    assert not (files / "pwned").exists()


def test_the_documented_bad_commands_exit_non_zero_with_one_line():
    commands = [
        ["predict", "--checkpoint", "C", "missing.jpg"],
        ["evaluate", "--crops", "7", "--checkpoint", "C"],
        ["train", "--config", "does-not-exist.yaml"],
    ]
    started = [  # side by side: each spends its time importing torch
        subprocess.Popen([sys.executable, "-m", "googlenet", *args], stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    for args, process in zip(commands, started, strict=True):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode != 0 and "Traceback" not in stderr, args
        assert len(stderr.strip().splitlines()) == 1, stderr
