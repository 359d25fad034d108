"""The README's code works as written."""

import os
import re
import shlex
from pathlib import Path

from hwgen.compiler import compile_model

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_model_snippet_compiles(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
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
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "hwgen-nn.md").read_text(),
                     re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "docs/hwgen-nn.md", "exec"), {})
    finally:
        os.chdir(cwd)
    accuracy = float(capsys.readouterr().out.split()[-1])
    assert accuracy > 0.9  # it learns (on its training data)
    graph = compile_model(tmp_path / "model.pt")
    assert [(layer.mh, layer.mw) for layer in graph.layers] == [(32, 64), (10, 32)]
