"""The Xception network, its settings file and the checkpoint format."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model.errors import CheckpointError
from model.network import (
    ModelSettings,
    build_model,
    fake_probabilities,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
    settings_path,
)


@pytest.fixture(scope="module")
def settings():
    return ModelSettings(version="1.2.3", input_size=160)


@pytest.fixture(scope="module")
def network(settings):
    torch.manual_seed(0)
    return build_model(settings).eval()


def test_state_dict_has_the_two_class_head_and_no_imagenet_fc(network):
    keys = network.state_dict().keys()
    assert not any(key.startswith("fc.") for key in keys)
    assert network.state_dict()["last_linear.1.weight"].shape == (2, 2048)
    assert "conv1.weight" in keys and "block12.rep.1.pointwise.weight" in keys


def test_fake_probability_is_softmax_index_one(network, settings):
    batch = torch.randn(3, 3, settings.input_size, settings.input_size)
    with torch.inference_mode():
        logits = network(batch)
        probabilities = fake_probabilities(network, batch, settings)
    assert probabilities.shape == (3,)
    torch.testing.assert_close(probabilities, torch.softmax(logits, dim=1)[:, 1])


def test_checkpoint_round_trip_gives_identical_logits(network, settings, tmp_path):
    weights = tmp_path / "demo.pt"
    sha256 = save_checkpoint(network, settings, weights)
    assert settings_path(weights).is_file()
    assert sha256 == file_sha256(weights)
    loaded, loaded_settings = load_checkpoint(weights)
    assert loaded_settings == settings
    batch = torch.randn(2, 3, settings.input_size, settings.input_size)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(batch), network(batch), rtol=0, atol=0)


def test_settings_json_round_trip(settings):
    assert ModelSettings.from_json(settings.to_json()) == settings


def test_settings_with_unknown_keys_are_refused(settings):
    text = settings.to_json().replace('"name"', '"colour": "blue", "name"')
    with pytest.raises(CheckpointError, match="unknown keys"):
        ModelSettings.from_json(text)


def test_missing_settings_file_is_named(network, settings, tmp_path):
    weights = tmp_path / "lonely.pt"
    save_checkpoint(network, settings, weights)
    settings_path(weights).unlink()
    with pytest.raises(CheckpointError, match=r"lonely\.json is missing"):
        load_checkpoint(weights)


def test_weights_that_do_not_fit_are_refused(network, settings, tmp_path):
    weights = tmp_path / "wrong.pt"
    save_checkpoint(network, settings, weights)
    state_dict = torch.load(weights, weights_only=True)
    state_dict["last_linear.1.weight"] = torch.zeros(3, 2048)
    torch.save(state_dict, weights)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(weights)


def test_weights_file_that_is_not_a_checkpoint(settings, tmp_path):
    weights = tmp_path / "garbage.pt"
    weights.write_bytes(b"not a checkpoint")
    settings_path(weights).write_text(settings.to_json())
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(weights)


def test_settings_validate_their_values():
    with pytest.raises(CheckpointError):
        ModelSettings(architecture="resnet")
    with pytest.raises(CheckpointError):
        ModelSettings(input_size=32)
    assert dataclasses.replace(ModelSettings(), fake_index=0).fake_index == 0
