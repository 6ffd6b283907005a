"""`googlenet explain`: each image file's class activation map (or a layer's Grad-CAM) drawn over what the network
saw, with the explained class and the map's peak box."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from googlenet.data.images import image_files, load_image
from googlenet.data.transforms import transforms_for
from googlenet.evaluate.driver import resolve_device
from googlenet.inside.cam import Maps, class_activation_maps, grad_cam, peak_box, upsampled
from googlenet.model import load_for_inference
from googlenet.model.googlenet import GoogLeNet

CAM_LAYER = "inception_5b"  # the layer a class activation map is computed on: the last Inception module


def class_index(names: list[str] | None, classes: int, name: str | None) -> int | None:
    """The index of class `name` (a class name of the weights' record, or its index); None for each image's top
    class. An unknown name is one line naming the close ones."""
    if name is None:
        return None
    if names and name in names:
        return names.index(name)
    if name.isdigit() and int(name) < classes:
        return int(name)
    close = difflib.get_close_matches(name, names or [], n=3, cutoff=0.5)
    tip = f"; did you mean {', '.join(close)}?" if close else f" (the classes: 0-{classes - 1}, or their names)"
    raise ValueError(f"no class {name!r} in these weights{tip}")


def overlay(view: torch.Tensor, heat: torch.Tensor, box: tuple[int, int, int, int]) -> Image.Image:
    """The picture the network saw (3, S, S in [0, 1]) with the map in matplotlib's jet colours blended over it
    (half and half) and the peak box drawn in white."""
    from matplotlib import colormaps
    from PIL import ImageDraw

    scaled = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    colours = torch.from_numpy(colormaps["jet"](scaled.cpu().numpy())[..., :3]).permute(2, 0, 1).float()
    blended = (0.5 * view.cpu() + 0.5 * colours).clamp(0, 1)
    picture = Image.fromarray((blended.permute(1, 2, 0) * 255).round().byte().numpy())
    ImageDraw.Draw(picture).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=(255, 255, 255), width=2)
    return picture


def explain(
    checkpoint: str,
    images: list[str],
    class_name: str | None = None,
    layer: str | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Per image file: the explained class (its top class, or `class_name`) and probability, the map's peak box in
    the pixels of the network's input (after the test-time resize and centre crop), and with `out` the heat map
    over that input as `out/<name>.cam.png`. The map is section 5's class activation map (the classifier's weights
    over inception_5b's maps) or, with `layer`, that layer's Grad-CAM. An unreadable file gets {"image", "error"}."""
    files = image_files(images)
    if not files:
        raise ValueError(f"no image files in {', '.join(images)} (Pillow's endings: .jpg, .png, .bmp, .tif, ...)")
    model = load_for_inference(checkpoint, optimize=False)  # the eager modules: the layer names are theirs
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"{checkpoint} is an exported file; explain needs weights (.safetensors, a run, ...)")
    target = resolve_device(device)
    model = model.to(target).eval()
    names, preprocess, meta = model.meta.class_names, transforms_for(model.meta), model.meta
    classes = model.linear.out_features if isinstance(model.linear, torch.nn.Linear) else 0
    index = class_index(names, classes, class_name)
    mean, std = (torch.tensor(v, device=target)[:, None, None] for v in (meta.mean, meta.std))
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            x = preprocess(load_image(path))[None].to(target)
        except (OSError, ValueError) as err:
            results.append({"image": str(path), "error": str(err)})
            continue
        maps: Maps = class_activation_maps(model, x, index) if layer is None else grad_cam(model, x, layer, index)
        heat = upsampled(maps.maps, (x.shape[-2], x.shape[-1]))[0]
        box, chosen = peak_box(heat), int(maps.classes[0])
        record: dict[str, Any] = {
            "image": str(path),
            "class": names[chosen] if names else str(chosen),
            "index": chosen,
            "probability": float(maps.logits.softmax(1)[0, chosen]),
            "map": f"{layer or CAM_LAYER} ({'Grad-CAM' if layer else 'CAM'})",
            "box": list(box),
        }
        if folder is not None:
            view = (x[0] * std + mean).clamp(0, 1)
            record["heatmap"] = str(folder / f"{path.stem}.cam.png")
            overlay(view, heat, box).save(record["heatmap"])
        results.append(record)
    return results
