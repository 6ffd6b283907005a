"""Looking inside the network: `googlenet explain` (class activation maps, Grad-CAM)."""

from __future__ import annotations

import argparse

from googlenet.cli.options import add_checkpoint_option, add_device_option, answer, split_images


def explain(a: argparse.Namespace) -> int:
    """Each image's class activation map over the network's input (PNG with --out), its class and peak box; a file
    that cannot be read is named on stderr and the others answered (exit status 1)."""
    from googlenet.inside.explain import explain as run_explain

    split_images(a)
    if len(a.checkpoint) != 1:
        raise ValueError("explain takes one --checkpoint (a map explains one model)")
    results = run_explain(a.checkpoint[0], a.images, a.class_name, a.layer, a.out, a.device)
    return answer(results, a.json, _explanation_lines)


def _explanation_lines(r: dict) -> list[str]:
    where = f", {r['heatmap']}" if "heatmap" in r else ""
    return [f"{r['image']}: {r['class']} {100 * r['probability']:.2f}%, peak box {r['box']} ({r['map']}{where})"]


def add_explain(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Where the network looks: the class activation map of section 5's architecture (the classifier's weights "
        "over inception_5b's maps: exact for its global average pooling; Zhou et al. 2016), or with --layer that "
        "layer's Grad-CAM, over the picture the network sees (after the test-time resize and centre crop), with "
        "the explained class and the box around the map's peak region (above 20% of its range)."
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders; also after --checkpoint")
    add_checkpoint_option(p)
    p.add_argument("--class", dest="class_name", help="the class to explain, by name or index (default: the top one)")
    p.add_argument(
        "--layer",
        help="Grad-CAM of this layer instead: our name (inception_4c), BVLC's (inception_4c/output) or Lucid's "
        "(mixed4c)",
    )
    p.add_argument("--out", help="folder for the heat maps (IMAGE.cam.png); none written without it")
    p.add_argument("--json", action="store_true", help="print a JSON list: image, class, probability, box, heatmap")
    add_device_option(p)
    p.set_defaults(run=explain)
