"""The FaceForensics++ converter, on checkpoints made here in FaceForensics++'s own format.

FaceForensics++ saves whole `TransferModel` objects whose classes live in its repository's
`network` package. The test writes a stand-in `network` package (same class names and module
paths, Xception layers from pretrainedmodels), pickles a model with it in a subprocess, then
converts in this process, where `network` cannot be imported, exactly as a user would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from model.errors import CheckpointError
from model.network import load_checkpoint
from tools.convert_ffpp import convert, load_ffpp_state_dict, main

FFPP_NETWORK_PACKAGE = {
    "__init__.py": "",
    "models.py": textwrap.dedent(
        """
        import importlib

        import torch.nn as nn

        pm = importlib.import_module("pretrainedmodels.models.xception")
        # FaceForensics++ ships its own copy of these classes in network/xception.py.
        CLASSES = {
            name: type(name, (getattr(pm, name),), {"__module__": "network.xception"})
            for name in ("Xception", "Block", "SeparableConv2d")
        }


        class TransferModel(nn.Module):
            def __init__(self, modelchoice="xception", num_out_classes=2, dropout=0.5):
                super().__init__()
                self.modelchoice = modelchoice
                self.model = pm.xception(pretrained=None)
                for module in self.model.modules():
                    module.__class__ = CLASSES.get(type(module).__name__, type(module))
                if dropout:
                    self.model.last_linear = nn.Sequential(
                        nn.Dropout(p=dropout), nn.Linear(2048, num_out_classes)
                    )
                else:
                    self.model.last_linear = nn.Linear(2048, num_out_classes)

            def forward(self, x):
                return self.model(x)
        """
    ),
    "xception.py": "from network.models import CLASSES\nglobals().update(CLASSES)\n",
}

MAKE_CHECKPOINTS = textwrap.dedent(
    """
    import sys
    import torch
    from network.models import TransferModel

    folder, dropout = sys.argv[1], float(sys.argv[2])
    torch.manual_seed(0)
    model = TransferModel(dropout=dropout).eval()
    torch.save(model, f"{folder}/full_zip.p")
    torch.save(model, f"{folder}/full_legacy.p", _use_new_zipfile_serialization=False)
    torch.save(model.state_dict(), f"{folder}/state_dict.p")
    torch.manual_seed(1)
    images = torch.randn(2, 3, 299, 299)
    with torch.no_grad():
        torch.save({"images": images, "logits": model(images)}, f"{folder}/expected.pt")
    """
)

pytestmark = pytest.mark.integration


def _make_ffpp_checkpoints(folder, dropout):
    package = folder / "network"
    package.mkdir()
    for name, source in FFPP_NETWORK_PACKAGE.items():
        (package / name).write_text(source)
    subprocess.run(
        [sys.executable, "-c", MAKE_CHECKPOINTS, str(folder), str(dropout)],
        cwd=folder,
        check=True,
        env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    return torch.load(folder / "expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def ffpp_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ffpp")
    expected = _make_ffpp_checkpoints(folder, dropout=0.5)
    return folder, expected


def test_network_package_is_not_importable_here():
    with pytest.raises(ModuleNotFoundError):
        __import__("network.models")


@pytest.mark.parametrize("file_name", ["full_zip.p", "full_legacy.p", "state_dict.p"])
def test_converted_checkpoint_gives_the_original_logits(ffpp_folder, tmp_path, file_name):
    folder, expected = ffpp_folder
    destination = tmp_path / "ffpp.pt"
    assert main([str(folder / file_name), str(destination), "--version", "2.0.0"]) == 0
    network, settings = load_checkpoint(destination)
    assert (settings.name, settings.version, settings.input_size) == ("ffpp-xception", "2.0.0", 299)
    assert (settings.mean, settings.std, settings.fake_index) == ((0.5,) * 3, (0.5,) * 3, 1)
    with torch.inference_mode():
        torch.testing.assert_close(network(expected["images"]), expected["logits"])


def test_head_without_dropout_is_renamed(tmp_path):
    expected = _make_ffpp_checkpoints(tmp_path, dropout=0.0)
    state_dict = load_ffpp_state_dict(tmp_path / "full_zip.p")
    assert "last_linear.1.weight" in state_dict and "last_linear.weight" not in state_dict
    convert(tmp_path / "full_zip.p", tmp_path / "converted.pt", "1.0.0")
    network, _ = load_checkpoint(tmp_path / "converted.pt")
    with torch.inference_mode():
        torch.testing.assert_close(network(expected["images"]), expected["logits"])


def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    source = tmp_path / "evil.p"
    script = (
        "import os, sys, torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'model': Evil()}}, '{source}')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_ffpp_state_dict(source)
    assert not marker.exists()
    assert main([str(source), str(tmp_path / "out.pt")]) == 1


def test_something_else_entirely_is_refused(tmp_path):
    source = tmp_path / "resnet.p"
    torch.save({"conv.weight": torch.zeros(3, 3)}, source)
    with pytest.raises(CheckpointError, match="not a FaceForensics"):
        convert(source, tmp_path / "out.pt", "1.0.0")
