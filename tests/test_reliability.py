"""Issue 8: bad data never stops a long run, an interrupted run loses nothing, untrusted files cannot run code,
and every bad input gets a clear error. docs/reliability.md lists each fault and what happens."""

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from googlenet.data.detection import read_xml
from googlenet.data.images import UnreadableImage, load_image

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
