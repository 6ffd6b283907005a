from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands():
    """The commands in the README's first code block."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_top_has_exactly_two_setup_commands():
    main_job, tests = _setup_commands()
    assert "python3 -m venv .venv" in main_job and "googlenet train --config configs/fashion_mnist.yaml" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command():
    assert _setup_commands()[1] in (ROOT / ".ci" / "run").read_text()
