"""The training augmentation in two halves (uint8 crops in the workers, colour per batch on the device): its draws
have the distribution of the PIL pipeline it replaced (torchvision's RandomResizedCrop, RandomChoice over the
paper's four interpolations, RandomHorizontalFlip, ColorJitter, AlexNet's lighting), its pixels equal what
torchvision's functional ops make of the same draw, and it is reproducible per sample."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from googlenet.data import Augmented, SkipUnreadable, build_dataset, images, train_transform
from googlenet.data.images import EncodedImage, decode_crop, decode_scaled, jpeg_size, read_encoded
from googlenet.data.loaders import EpochSampler
from googlenet.data.transforms import EIGVAL, EIGVEC, PAPER_INTERPOLATIONS, Draw, dct_reduction

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)
N = 4000


def _ks(a, b) -> float:
    """The two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


KS_LIMIT = 1.95 * math.sqrt(2 / N)  # the 0.1% critical value for two samples of N


def _photo(width=320, height=240, seed=0) -> Image.Image:
    """A smooth photo-like image with some detail."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8))
    smooth = np.asarray(base.resize((width, height), Image.BICUBIC), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + rng.integers(-12, 12, smooth.shape), 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality=90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_draws_follow_the_pil_pipelines_distributions():
    aug = train_transform(224, MEAN, STD)
    torch.manual_seed(0)
    draws = [aug.draw(500, 375) for _ in range(N)]
    crop, jitter = v2.RandomResizedCrop(224), v2.ColorJitter(0.5, 0.5, 0.5)
    image = torch.empty((1, 1, 1), dtype=torch.uint8).expand(3, 375, 500)
    reference = [crop.make_params([image]) for _ in range(N)]
    area = np.array([d.height * d.width for d in draws]) / (500 * 375)
    area_ref = np.array([r["height"] * r["width"] for r in reference]) / (500 * 375)
    aspect = np.log([d.width / d.height for d in draws])
    aspect_ref = np.log([r["width"] / r["height"] for r in reference])
    assert _ks(area, area_ref) < KS_LIMIT and _ks(aspect, aspect_ref) < KS_LIMIT
    assert area.min() >= 0.075 and area.max() <= 1 and abs(aspect).max() <= math.log(4 / 3) + 0.02
    assert all(0 <= d.top <= 375 - d.height and 0 <= d.left <= 500 - d.width for d in draws)
    counts = [sum(d.interpolation == i for d in draws) for i in PAPER_INTERPOLATIONS]
    assert InterpolationMode.BOX in PAPER_INTERPOLATIONS and all(880 < c < 1120 for c in counts), counts
    assert 1880 < sum(d.flip for d in draws) < 2120
    orders = [d.order for d in draws]
    assert {o: orders.count(o) for o in set(orders)}.keys() == set(__import__("itertools").permutations(range(3)))
    assert all(560 < orders.count(o) < 780 for o in set(orders))  # each of the 6 orders about N/6
    jittered = [jitter.make_params([image]) for _ in range(N)]
    for k, name in enumerate(("brightness", "contrast", "saturation")):
        factors = np.array([d.factors[k] for d in draws])
        assert factors.min() >= 0.5 and factors.max() <= 1.5
        assert _ks(factors, np.array([j[f"{name}_factor"] for j in jittered])) < KS_LIMIT
    # lighting: shift = eigvec @ (alpha * eigval), alpha ~ N(0, 0.1) per channel, as AlexNet's
    alpha = np.linalg.solve(np.array(EIGVEC), np.array([d.shift for d in draws]).T).T / np.array(EIGVAL)
    assert np.abs(alpha.mean(0)).max() < 0.01 and np.abs(alpha.std(0) - 0.1).max() < 0.006


@pytest.mark.parametrize("interpolation", PAPER_INTERPOLATIONS)
def test_crops_equal_pils_resized_crop(interpolation, monkeypatch):
    """The worker's uint8 crop of a draw is PIL's resized crop of the same box with the same filter (what the old
    pipeline made): area and nearest are PIL's own, torchvision's uint8 bilinear/bicubic kernels round otherwise
    (one level of 255 at most, in a share of the pixels)."""
    image = _photo()
    aug = train_transform(64, MEAN, STD)
    for box in [(10, 20, 200, 150), (0, 0, 240, 320), (100, 200, 40, 30)]:  # down, down, up
        draw = Draw(*box, interpolation, False, (0, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        monkeypatch.setattr(aug, "draw", lambda w, h, d=draw: d)
        ours = aug(image)[0].int()
        pil = F.pil_to_tensor(F.resized_crop(image, *box, [64, 64], interpolation=interpolation)).int()
        diff = (ours - pil).abs().float()
        upscale = box[2] < 64
        if interpolation in (InterpolationMode.NEAREST, InterpolationMode.BOX):
            assert diff.max() == 0
        else:
            assert diff.max() <= 1 and diff.mean() < 0.5, (box, upscale, diff.mean(), diff.max())


def test_colour_on_the_device_equals_torchvisions_ops_per_image():
    """The per-batch half equals torchvision's adjust_* on each float image in its own order, then the lighting
    shift and normalisation; and the old PIL ColorJitter of the same factors to within its uint8 rounding."""
    torch.manual_seed(1)
    aug = train_transform(48, MEAN, STD)
    pixels = torch.randint(0, 256, (6, 3, 48, 48), dtype=torch.uint8)
    draws = [aug.draw(48, 48) for _ in range(6)]
    assert len({d.order for d in draws}) > 2
    out = aug.on_device(pixels, torch.stack([d.colour() for d in draws]))
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)
    for image, d, got in zip(pixels, draws, out, strict=True):
        x, pil = image.float() / 255, F.to_pil_image(image)
        for k in d.order:
            x, pil = ops[k](x, d.factors[k]), ops[k](pil, d.factors[k])
        x = (x + torch.tensor(d.shift).view(3, 1, 1)).clamp(0, 1)
        want = F.normalize(x, list(MEAN), list(STD))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        old = (F.pil_to_tensor(pil).float() / 255 + torch.tensor(d.shift).view(3, 1, 1)).clamp(0, 1)
        # PIL rounds each step's output (0.5 level) and its gray target (0.5 level times |1 - f| <= 0.5): 0.75 a
        # step; a later step with f <= 1.5 scales an error by at most f + |1 - f| = 2, so 0.75 (1 + 2 + 4) levels
        worst = (F.normalize(old, list(MEAN), list(STD)) - got).mul(torch.tensor(STD).view(3, 1, 1)).abs().max()
        assert worst <= 5.25 / 255


def test_each_part_switches_off():
    plain = train_transform(
        32, MEAN, STD, random_resized_crop=False, random_interpolation=False, hflip=False, photometric=0, lighting=0
    )
    image = _photo(50, 40)
    pixels, colour = plain(image)
    assert torch.equal(pixels, plain(image)[0]) and torch.equal(colour, torch.tensor([0, 1, 2, 1, 1, 1, 0, 0, 0.0]))
    whole = F.resize(F.pil_to_tensor(image), [32, 32], antialias=True)  # the whole image, bilinear
    assert torch.equal(pixels, whole)
    want = F.normalize(whole.float() / 255, list(MEAN), list(STD))
    torch.testing.assert_close(plain.single(image), want)


def test_jpegs_decode_at_the_scale_the_crop_needs(monkeypatch):
    assert [dct_reduction(w, h, 224) for w, h in [(500, 375), (448, 448), (1000, 460), (1800, 1800), (2000, 900)]] == [
        1,
        2,
        2,
        8,
        4,
    ]
    large = _photo(1600, 1200, seed=2)
    encoded = EncodedImage("large.jpg", _jpeg(large))
    assert decode_scaled(encoded, 4).shape == (300, 400, 3)
    aug = train_transform(224, MEAN, STD)
    scales = []
    real = decode_crop
    monkeypatch.setattr(
        "googlenet.data.transforms.decode_crop", lambda image, h, r, box: scales.append(r) or real(image, h, r, box)
    )
    for interpolation in PAPER_INTERPOLATIONS:
        draw = Draw(0, 0, 1200, 1600, interpolation, False, (0, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        monkeypatch.setattr(aug, "draw", lambda w, h, d=draw: d)
        reduced = aug(encoded)[0].float()
        full = aug(Image.open(io.BytesIO(encoded.data)).convert("RGB"))[0].float()  # decoded by PIL in full
        if interpolation in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
            assert (reduced - full).abs().mean() < 1.5, interpolation
        else:
            assert torch.equal(reduced, full)  # decoded in full: OpenCV's libjpeg-turbo decodes as Pillow's does
    assert scales == [4, 1, 1, 4]  # area and nearest see the full-size pixels


def _saved(image: Image.Image, **options) -> EncodedImage:
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return EncodedImage("x.jpg", out.getvalue())


def test_the_region_decoder_is_built_where_libjpeg_is():
    """setup.py builds it wherever a compiler and libjpeg's headers are (as on the machines the suite runs on); the
    pipeline then decodes crops alone. Elsewhere it is optional and this says why it is skipped."""
    import shutil
    import sysconfig
    from pathlib import Path

    headers = [Path(d) / "jpeglib.h" for d in ("/usr/include", "/usr/local/include", sysconfig.get_paths()["include"])]
    if not shutil.which("cc") or not any(h.exists() for h in headers):
        pytest.skip("no C compiler or jpeglib.h here: googlenet.data._jpeg is not built, whole images are decoded")
    assert images._jpeg is not None, "googlenet.data._jpeg was not built: reinstall with pip install -e ."


@pytest.mark.skipif(images._jpeg is None, reason="googlenet.data._jpeg is not built (no compiler or libjpeg headers)")
def test_a_region_decode_equals_the_whole_decodes_crop():
    """Only the crop's rows and columns are decoded, and nothing below it, yet the pixels are those of the crop cut
    from the whole image as OpenCV decodes it, at every DCT scale, for 4:2:0, 4:4:4, progressive and gray JPEGs
    and for crops at the image's edges, of one pixel, and of all of it."""
    rng = np.random.default_rng(0)
    photo = _photo(333, 250, seed=4)
    files = [
        _saved(photo, quality=90),
        _saved(photo, quality=95, subsampling=0),
        _saved(photo, quality=85, progressive=True),
        _saved(photo.convert("L"), quality=90),
    ]
    calls = []
    real = images._jpeg.decode_region
    for image in files:
        header = jpeg_size(image)
        assert header == (333, 250, True)
        for reduction in (1, 2, 4, 8):
            whole = decode_scaled(image, reduction)
            assert whole.shape[:2] == (-(-250 // reduction), -(-333 // reduction))
            boxes = [(0, 0, 250, 333), (249, 332, 1, 1), (0, 300, 250, 33), (100, 0, 150, 17)]
            for _ in range(12):
                height, width = int(rng.integers(1, 251)), int(rng.integers(1, 334))
                boxes.append((int(rng.integers(0, 251 - height)), int(rng.integers(0, 334 - width)), height, width))
            for box in boxes:
                scale_y, scale_x = whole.shape[0] / 250, whole.shape[1] / 333
                top, left = round(box[0] * scale_y), round(box[1] * scale_x)
                bottom = max(round((box[0] + box[2]) * scale_y), top + 1)
                right = max(round((box[1] + box[3]) * scale_x), left + 1)
                images._jpeg.decode_region = lambda *a: calls.append(a) or real(*a)
                try:
                    got = decode_crop(image, header, reduction, box)
                finally:
                    images._jpeg.decode_region = real
                np.testing.assert_array_equal(got, whole[top:bottom, left:right], err_msg=f"{box} at 1/{reduction}")
    assert len(calls) == 4 * 4 * 16  # every one decoded as a region


@pytest.mark.skipif(images._jpeg is None, reason="googlenet.data._jpeg is not built (no compiler or libjpeg headers)")
def test_what_a_region_decode_cannot_take_is_decoded_whole():
    """A file turned by EXIF orientation, one cut short, one with bytes after its end, and a CMYK one are decoded
    whole (OpenCV, Pillow) as before: upright, found damaged, or converted, as without the region decoder."""
    photo = _photo(120, 80, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: upright it is 80 wide, 120 high
    turned = _saved(photo, exif=exif.tobytes())
    header = jpeg_size(turned)
    assert header == (80, 120, False)
    crop = decode_crop(turned, header, 1, (10, 20, 30, 40))
    np.testing.assert_array_equal(crop, decode_scaled(turned, 1)[10:40, 20:60])
    plain = _saved(photo)
    cut = EncodedImage("cut.jpg", plain.data[: len(plain.data) // 2])
    assert jpeg_size(cut) == (120, 80, False)
    with pytest.raises(images.UnreadableImage, match=r"cut\.jpg"):
        decode_crop(cut, jpeg_size(cut), 1, (0, 0, 10, 10))  # the top rows are there, but the file is damaged
    assert jpeg_size(EncodedImage("tail.jpg", plain.data + b"extra"))[2] is False
    cmyk = _saved(photo.convert("CMYK"))
    header = jpeg_size(cmyk)
    assert header == (120, 80, False)
    assert decode_crop(cmyk, header, 1, (0, 0, 80, 120)).shape == (80, 120, 3)


def test_reproducible_per_sample_with_any_workers(tmp_path):
    for k in range(12):
        (tmp_path / "train" / f"c{k % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / f"c{k % 3}" / f"{k}.jpg").write_bytes(_jpeg(_photo(120 + 10 * k, 90, seed=k)))
    data = build_dataset("imagefolder", str(tmp_path), "train", decode=False)
    assert isinstance(data[0][0], EncodedImage)
    aug = Augmented(data, train_transform(32, MEAN, STD), seed=3)
    batches = []
    for workers in (0, 2):
        sampler = EpochSampler(aug, num_replicas=1, rank=0, shuffle=True, seed=3)
        sampler.set_epoch(1)
        loader = DataLoader(aug, batch_size=4, sampler=sampler, num_workers=workers)
        batches.append([(p.clone(), c.clone(), y.clone()) for (p, c), y in loader])
    for (p0, c0, y0), (p1, c1, y1) in zip(*batches, strict=True):
        assert torch.equal(p0, p1) and torch.equal(c0, c1) and torch.equal(y0, y1)
        assert p0.dtype == torch.uint8 and c0.shape == (4, 9)


def test_a_file_found_damaged_while_decoding_is_replaced(tmp_path, capsys):
    (tmp_path / "train" / "a").mkdir(parents=True)
    good = _jpeg(_photo(80, 60))
    (tmp_path / "train" / "a" / "good.jpg").write_bytes(good)
    (tmp_path / "train" / "a" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    data = build_dataset("imagefolder", str(tmp_path), "train", decode=False)
    assert read_encoded(tmp_path / "train" / "a" / "truncated.jpg").data == good[: len(good) // 2]
    aug = Augmented(SkipUnreadable(data, tmp_path / "bad.jsonl", "train"), train_transform(32, MEAN, STD), seed=0)
    (pixels, _), label = aug[(1, 0)]
    assert pixels.shape == (3, 32, 32) and label == 0
    assert "truncated.jpg" in capsys.readouterr().err and "truncated.jpg" in (tmp_path / "bad.jsonl").read_text()
