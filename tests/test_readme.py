"""The README's code works as written."""

import os
import re
import shlex
from pathlib import Path

from hwgen.compiler import compile_model

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def run_python_block(text: str, where: str, folder: Path):
    """Run the first ```python block of ``text`` in ``folder``."""
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(code, where, "exec"), {})
    finally:
        os.chdir(cwd)


def test_readme_model_snippet_compiles(tmp_path):
    run_python_block(README, "README.md", tmp_path)
    graph = compile_model(tmp_path / "model.pt")
    assert [(layer.mh, layer.mw) for layer in graph.layers] == [(64, 64), (10, 64)]


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", README, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    build, tests = (shlex.split(c) for c in commands)
    assert build[:3] == ["./dev", "hwgen", "build"]
    for path in build[3:]:
        if path.startswith("examples/"):
            assert (ROOT / path).exists(), path
    assert " ".join(tests) in (ROOT / ".ci" / "run").read_text()


def test_the_hwgen_nn_page_trains_exports_and_compiles(tmp_path, capsys):
    run_python_block((ROOT / "docs" / "hwgen-nn.md").read_text(), "docs/hwgen-nn.md", tmp_path)
    accuracy = float(capsys.readouterr().out.split()[-1])
    assert accuracy > 0.9  # it learns (on its training data)
    graph = compile_model(tmp_path / "model.pt")
    assert [(layer.mh, layer.mw) for layer in graph.layers] == [(32, 64), (10, 32)]
