"""The README's Python snippets run as written, in an empty folder."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_snippets_run_in_an_empty_folder(tmp_path):
    """As a reader runs them: nothing placed beforehand (the snippets make or name every file they read)."""
    assert _snippets(), "the README has Python snippets"
    for code in _snippets():
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
