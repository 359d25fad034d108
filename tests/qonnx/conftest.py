import sys
from pathlib import Path

# The QONNX tests share models.py; with --import-mode=importlib the test folder is not
# on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)``: the path of Brevitas model ``name`` exported to QONNX (once per
    session); ``exported("cnn@13")`` exports it at opset 13 with the TorchScript exporter."""
    from models import export

    out = tmp_path_factory.mktemp("qonnx")
    paths = {}

    def get(name):
        if name not in paths:
            model, _, opset = name.partition("@")
            paths[name] = export(model, out / f"{model}{opset}.onnx",
                                 int(opset) if opset else None)
        return paths[name]
    return get
