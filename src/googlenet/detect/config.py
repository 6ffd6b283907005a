"""The config sections of detection's two training tasks (`multibox:`, `detect:`), declared here in their own
room and found by the engine through the `googlenet.config` entry point. Light: no torch, so that every
training command's `--help` lists these options too."""

from __future__ import annotations

from dataclasses import dataclass

from googlenet.train.config import setting


@dataclass
class MultiBoxConfig:
    priors: int = setting(100, "MultiBox: number of predicted boxes, as offsets to as many k-means prior boxes")
    alpha: float = setting(
        0.3, "MultiBox: weight of the location term against the confidence term of the matching loss"
    )
    top: int = setting(200, "MultiBox: proposals kept per image after NMS (the paper: 200)")
    nms: float = setting(0.7, "MultiBox: IoU of the non-maximum suppression among its own boxes")
    grid: int = setting(
        4,
        "MultiBox head: the last feature map is pooled to grid x grid and reduced to 128 channels before the "
        "fully connected box layers, so they see where things are (0: the classifier's global average pool)",
    )
    tiles: int = setting(
        1,
        "MultiBox proposals: also run on a tiles x tiles grid of overlapping crops (3: nine crops of half the "
        "image, small objects seen 2x larger), all boxes then NMS and top; 1 = the whole image only",
    )

    def check(self) -> list[tuple[bool, str]]:
        """(ok, message) for each rule the values must follow."""
        return [
            (self.priors >= 1, "multibox.priors must be at least 1"),
            (self.top >= 1, "multibox.top must be at least 1"),
            (self.grid >= 0, f"multibox.grid must be 0 or more, not {self.grid}"),
            (self.tiles >= 1, f"multibox.tiles must be at least 1, not {self.tiles}"),
            (0 < self.nms <= 1, "multibox.nms must be in (0, 1]"),
            (self.alpha >= 0, "multibox.alpha must be 0 or more"),
        ]


@dataclass
class DetectConfig:
    proposals: str = setting(
        "ss2x", "region classifier: proposal method whose windows it trains on (ss, ss2x, ...; cached per image)"
    )
    foreground: float = setting(0.25, "region classifier: fraction of object windows per batch (R-CNN: 32 of 128)")
    fg_iou: float = setting(0.5, "region classifier: a window with IoU >= this to an object is that object's class")
    context: int = setting(16, "region classifier: pixels of context around each box after warping (R-CNN: 16 at 227)")
    val_windows: int = setting(
        4000, "region classifier: evaluation windows per epoch, with the batches' share of object windows"
    )

    def check(self) -> list[tuple[bool, str]]:
        """(ok, message) for each rule the values must follow."""
        return [
            (self.context >= 0, f"detect.context must be 0 or more, not {self.context}"),
            (self.val_windows >= 0, f"detect.val_windows must be 0 or more, not {self.val_windows}"),
            (0 < self.fg_iou <= 1, "detect.fg_iou must be in (0, 1]"),
            (0 < self.foreground < 1, f"detect.foreground must be between 0 and 1, not {self.foreground}"),
        ]


# Both tasks read both sections, as config.yaml has always held them (one YAML, one --section.field namespace);
# registered through the `googlenet.config` entry point.
SECTIONS = {"multibox": MultiBoxConfig, "detect": DetectConfig}
