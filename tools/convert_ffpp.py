"""Convert a FaceForensics++ released Xception checkpoint into this project's format.

    python -m tools.convert_ffpp SRC DST [--version 1.0.0]

FaceForensics++ publishes whole pickled `TransferModel` objects (`torch.save(model)`), whose
classes live in their repository (`network.models`, `network.xception`). Loading one needs
`weights_only=False`, i.e. unpickling, which can run code. So this converter unpickles with an
allow-list: torch's layers, tensors and storages, a few builtins, and FaceForensics++'s four
module classes (replaced by an empty module that only keeps parameters). Anything else, such as
`os.system`, is refused before it is called. Plain state_dicts (with or without the `model.` or
`module.` prefixes) are accepted too.
"""

from __future__ import annotations

import argparse
import copyreg
import pickle
import sys
import types
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.errors import CheckpointError
from model.network import ModelSettings, build_model, save_checkpoint
from model.schema import add_arguments, parse_command

FFPP_MODULE_CLASSES = {"TransferModel", "Xception", "Block", "SeparableConv2d"}
_SAFE_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "bool", "int", "float", "complex"}
_KEY_PREFIXES = ("module.", "model.")


class _ForeignModule(nn.Module):
    """Stands in for a FaceForensics++ class: keeps the submodules and parameters it is given."""


def _no_backend() -> None:
    """torch <= 1.0 pickled each layer's THNN backend; today's torch has none and needs none."""
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if name in FFPP_MODULE_CLASSES and not module.startswith("torch"):
            return _ForeignModule
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return super().find_class("builtins", name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("copyreg", "_reconstructor"):
            return copyreg._reconstructor
        if module == "torch.nn.backends.thnn" and name == "_get_thnn_function_backend":
            return _no_backend
        if _is_allowed_torch_global(module, name):
            return super().find_class(module, name)
        raise CheckpointError(
            f"refusing to unpickle {module}.{name}: a FaceForensics++ checkpoint holds only "
            "torch layers and tensors, so this file is something else"
        )


def _is_allowed_torch_global(module: str, name: str) -> bool:
    if module == "torch":
        return name.endswith("Storage") or name in {"Size", "device", "float32", "float16"}
    if module == "torch._utils":
        return name.startswith("_rebuild_")
    if module == "torch.nn.parameter":
        return name == "Parameter"
    if module.startswith("torch.nn.modules."):
        candidate = getattr(sys.modules.get(module), name, None)
        return isinstance(candidate, type) and issubclass(candidate, nn.Module)
    return False


def _restricted_pickle_module() -> types.ModuleType:
    """A stand-in for the `pickle` module, as `torch.load(pickle_module=...)` expects."""
    module = types.ModuleType("restricted_pickle")
    module.Unpickler = _RestrictedUnpickler
    module.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
    return module


def load_ffpp_state_dict(source: Path) -> dict[str, torch.Tensor]:
    """State dict with this project's key names from a FaceForensics++ checkpoint file."""
    try:
        with warnings.catch_warnings():
            # torch compares pickled class sources with ours; the stand-in never matches.
            warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
            loaded = torch.load(
                source,
                map_location="cpu",
                weights_only=False,
                pickle_module=_restricted_pickle_module(),
            )
    except CheckpointError:
        raise
    except Exception as error:  # torch raises many types for files it cannot read
        raise CheckpointError(f"cannot read {source} as a torch checkpoint: {error}") from error
    if isinstance(loaded, nn.Module):
        state_dict = loaded.state_dict()
    elif isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        state_dict = loaded["state_dict"]
    elif isinstance(loaded, dict):
        state_dict = loaded
    else:
        raise CheckpointError(
            f"{source} holds a {type(loaded).__name__}, not a model or state_dict"
        )
    return _renamed_for_our_network(state_dict)


def _renamed_for_our_network(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    expected = build_model(ModelSettings()).state_dict()
    renamed = {}
    for key, tensor in state_dict.items():
        for prefix in _KEY_PREFIXES:
            key = key.removeprefix(prefix)
        if key.startswith("fc."):
            continue  # ImageNet head of an unconverted Xception; never used for this task
        if key in ("last_linear.weight", "last_linear.bias"):
            key = key.replace("last_linear.", "last_linear.1.")  # head trained with dropout=0
        reference = expected.get(key)
        if reference is not None and tensor.dim() == 2 and reference.dim() == 4:
            tensor = tensor.reshape(reference.shape)  # pointwise convs saved as 2-D (torch 0.3)
        renamed[key] = tensor
    return renamed


def convert(source: Path, destination: Path, version: str) -> str:
    """Write `destination` (.pt) and its settings (.json); return the weights' sha256."""
    settings = ModelSettings(name="ffpp-xception", version=version)
    network = build_model(settings)
    state_dict = load_ffpp_state_dict(source)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{source} is not a FaceForensics++ Xception: {error}") from error
    return save_checkpoint(network, settings, destination)


@dataclass(frozen=True)
class ConvertCommand:
    """`python -m tools.convert_ffpp`'s settings, a flag per field."""

    source: Path = field(
        metadata={"positional": True, "help": "FaceForensics++ checkpoint (e.g. full_c23.p)"}
    )
    destination: Path = field(
        metadata={"positional": True, "help": "output weights path, e.g. ffpp_c23.pt"}
    )
    version: str = field(default="1.0.0", metadata={"help": "version written to the settings"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, ConvertCommand)
    command = parse_command(parser, ConvertCommand, argv)
    try:
        sha256 = convert(command.source, command.destination, command.version)
    except CheckpointError as error:
        print(f"convert_ffpp: {error}", file=sys.stderr)
        return 1
    print(f"convert_ffpp: wrote {command.destination} (sha256 {sha256}) and its settings file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
