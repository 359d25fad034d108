"""The documented CI recipe (docs/hwgen-verify.yml) works: its `run:` steps, in order, in a
fresh virtual environment, install hwgen with pip (from a copy of this repository) and verify
the digits example with a JUnit report."""

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "docs" / "hwgen-verify.yml"


def test_recipe_is_a_workflow():
    workflow = yaml.safe_load(RECIPE.read_text())
    steps = workflow["jobs"]["verify"]["steps"]
    assert any("actions/cache" in step.get("uses", "") for step in steps)
    paths = next(step["with"]["path"] for step in steps if "actions/cache" in step.get("uses", ""))
    assert "~/.cache/hwgen" in paths
    assert any("hwgen verify" in step.get("run", "") for step in steps)


@pytest.mark.slow
def test_recipe_runs_in_a_fresh_venv(tmp_path):
    workflow = yaml.safe_load(RECIPE.read_text())
    job = workflow["jobs"]["verify"]
    # The "checkout": the user's repository, with the model and inputs the recipe names.
    work = tmp_path / "repo"
    (work / "examples").mkdir(parents=True)
    for name in ("digits_mlp_w4a4.pt", "digits_test_x.npy"):
        shutil.copy(ROOT / "examples" / name, work / "examples" / name)
    # What pip installs hwgen from: a copy of this working tree.
    source = tmp_path / "hwgen-src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".ruff_cache", ".pytest_cache"))
    # This machine's package index instead of the public ones the recipe names.
    env = {**os.environ, **{k: str(v) for k, v in job["env"].items()}, "HWGEN": str(source),
           "TORCH_INDEX": ""}
    env.pop("VIRTUAL_ENV", None)
    for step in job["steps"]:
        if "run" not in step:
            continue
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=work, env=env,
                             capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, f"step {step.get('name')}:\n{run.stdout}\n{run.stderr}"
    suite = ET.parse(work / "hwgen-junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 6
    assert (work / "build" / "verify" / "report.json").exists()
