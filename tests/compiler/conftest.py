import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture
def export(tmp_path):
    """``export(module, example, name)``: export ``module.eval()`` with torch.export into the
    test's tmp dir and return the archive's path."""
    def export(module, example, name="model.pt2"):
        path = tmp_path / name
        ep = torch.export.export(module.eval(), (example,))
        torch.export.save(ep, path)
        return path
    return export


# Shared layer helpers (layers.py): with --import-mode=importlib the test folder is not on
# sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))
