"""The README's Python snippets run as written, in a folder holding the files they name."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_snippets_run(tmp_path):
    assert _snippets(), "the README has Python snippets"
    # The files they name: a photo, and torchvision's googlenet weights (not downloadable here: made locally).
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(
        tmp_path / "photo.jpg"
    )
    theirs = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(theirs.state_dict(), tmp_path / "googlenet-1378be20.pth")
    for code in _snippets():
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
