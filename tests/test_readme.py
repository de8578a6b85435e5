"""The README's usage example runs as written (x-transformers' test_readme)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run_and_are_short(capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2  # usage, then PyTorch Geometric models
    for block in blocks:
        assert len(block.strip().splitlines()) <= 20
        exec(compile(block, str(README), "exec"), {})
    report = capsys.readouterr().out
    assert "equivariance under S_n × E(3)" in report


def test_readme_quick_start_is_two_commands():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quick, re.S)[0].strip().splitlines()
    assert [c.split()[0] for c in commands] == ["./scripts/demo", "./scripts/test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
