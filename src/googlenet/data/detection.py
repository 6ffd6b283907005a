"""Detection data in PASCAL VOC / ILSVRC DET form: one XML annotation per image, boxes as (x1, y1, x2, y2).

VOC:        root/Annotations/*.xml, root/JPEGImages/*.jpg, root/ImageSets/Main/<split>.txt
ILSVRC DET: root/Annotations/DET/val/*.xml, root/Data/DET/val/*.JPEG, root/ImageSets/DET/val.txt
            (`VOCDetection(root, annotations="Annotations/DET/val", images="Data/DET/val",
            image_set="ImageSets/DET/val.txt")`)

VOC's pixel coordinates are 1-based and inclusive; here boxes are 0-based with exclusive ends
(x1 = xmin - 1, x2 = xmax), so a box's width is x2 - x1, as torchvision.ops expects.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from googlenet.data.images import load_image
from googlenet.data.loaders import class_order

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".JPEG", ".JPG", ".png", ".PNG")


@dataclass
class Annotation:
    """One image's objects: `boxes` (N, 4) float32 (x1, y1, x2, y2) pixels, their class names, difficult flags."""

    filename: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    names: list[str] = field(default_factory=list)
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    style: str = ""  # a generated scene's <style> (googlenet data scenes); "" in other datasets


def _number(path: str | os.PathLike, parent: ET.Element, field: str, where: str) -> float:
    """The finite number in `parent`'s child `field`; a ValueError naming the file and the field otherwise."""
    text = parent.findtext(field)
    if text is None:
        raise ValueError(f"{path}: {where}<{field}> is missing")
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{path}: {where}<{field}> is {text.strip()[:40]!r}, not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{path}: {where}<{field}> is {text.strip()!r}, not a finite number")
    return value


def read_xml(path: str | os.PathLike) -> Annotation:
    """A VOC / ILSVRC annotation file; a malformed one gives a ValueError naming the file and the field."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"{path}: not a readable VOC XML annotation ({err})") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: no <size> element")
    width, height = (_number(path, size, key, "<size>") for key in ("width", "height"))
    if width < 1 or height < 1:
        raise ValueError(f"{path}: <size> is {width:g} x {height:g}; width and height must be at least 1")
    boxes, names, difficult = [], [], []
    for k, obj in enumerate(root.iter("object"), 1):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        where = f"<object> {k} <bndbox>"
        xmin, ymin, xmax, ymax = (_number(path, bb, key, where) for key in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise ValueError(f"{path}: {where} has xmax < xmin or ymax < ymin ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})")
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{path}: <object> {k} has no <name>")
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        names.append(name)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return Annotation(
        filename=Path((root.findtext("filename") or "").strip() or Path(path).stem).name,  # never outside images/
        width=int(width),
        height=int(height),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        names=names,
        difficult=np.asarray(difficult, bool),
        style=(root.findtext("style") or "").strip(),
    )


def write_xml(annotation: Annotation, path: str | os.PathLike, folder: str = "JPEGImages") -> None:
    """Write `annotation` as a VOC XML file (integer pixel coordinates, 1-based inclusive)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = annotation.filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", annotation.width), ("height", annotation.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    if annotation.style:
        ET.SubElement(root, "style").text = annotation.style
    for box, name, hard in zip(annotation.boxes, annotation.names, annotation.difficult, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = str(int(hard))
        bb = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, key).text = str(value)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


class VOCDetection(Dataset):
    """Images and their annotations; `classes` from `classes_file` (one name per line, e.g. root/classes.txt)
    when it exists, else the sorted names found in the annotations. Items: (PIL RGB image, Annotation)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        annotations: str = "Annotations",
        images: str = "JPEGImages",
        image_set: str | None = None,
        classes_file: str = "classes.txt",
    ) -> None:
        self.root = Path(root)
        folder = self.root / annotations
        if not folder.is_dir():
            raise FileNotFoundError(f"no annotation folder {folder} (VOC layout: Annotations/, JPEGImages/)")
        self.images = self.root / images
        listing = self.root / (image_set or f"ImageSets/Main/{split}.txt") if (image_set or split) else None
        if listing is not None:
            if not listing.is_file():
                raise FileNotFoundError(f"no image list {listing}")
            ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        else:
            ids = sorted(p.stem for p in folder.glob("*.xml"))
        self.annotations = [read_xml(folder / f"{i}.xml") for i in ids]
        self.ids = ids
        names_file = self.root / classes_file
        if names_file.is_file():
            self.classes = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        else:
            self.classes = sorted({n for a in self.annotations for n in a.names})
        unknown = {n for a in self.annotations for n in a.names} - set(self.classes)
        if unknown:
            raise ValueError(f"{root}: annotations name classes missing from {classes_file}: {sorted(unknown)[:5]}")
        self._index = {name: i for i, name in enumerate(self.classes)}  # an annotation's name -> its label

    def matched_to(self, classes: list[str]) -> VOCDetection:
        """Labels as indices of `classes` (a classifier's), each of this dataset's classes matched to one of them by
        name in any order, up to case and the characters a file name cannot hold (`class_order`): a VOC download
        without classes.txt lists its classes sorted, the classifier in its training order. A class that matches
        none is a one-line ValueError."""
        order = class_order(list(self.classes), list(classes), kind="dataset class")
        self._index = {name: order[i] for name, i in self._index.items()}
        self.classes = list(classes)
        return self

    def __len__(self) -> int:
        return len(self.annotations)

    def limit(self, count: int) -> VOCDetection:
        """Keep the first `count` images only (0 = all)."""
        if count:
            self.ids, self.annotations = self.ids[:count], self.annotations[:count]
        return self

    def image_path(self, index: int) -> Path:
        """The image file of item `index`: the annotation's filename, or its id with a usual suffix."""
        name = self.annotations[index].filename
        for candidate in [
            name,
            *(Path(name).stem + s for s in IMAGE_SUFFIXES),
            *(self.ids[index] + s for s in IMAGE_SUFFIXES),
        ]:
            if (self.images / candidate).is_file():
                return self.images / candidate
        raise FileNotFoundError(f"no image for {self.ids[index]} in {self.images}")

    def __getitem__(self, index: int) -> tuple[Image.Image, Annotation]:
        return load_image(self.image_path(index)), self.annotations[index]

    def labels(self, index: int) -> np.ndarray:
        """Class indices of item `index`'s objects."""
        return np.asarray([self._index[n] for n in self.annotations[index].names], np.int64)
