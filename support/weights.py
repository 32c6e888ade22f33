"""Networks with known random weights, for checks that need the format and the input size, or
scores that spread, but not trained weights."""

from __future__ import annotations

from pathlib import Path

import torch

from model.network import ModelSettings, build_model, save_checkpoint


def random_checkpoint(path: Path, settings: ModelSettings) -> Path:
    """Seeded random Xception weights in the training checkpoint format: serving, timing and
    robustness checks need the format and the input size, not trained weights."""
    torch.manual_seed(0)
    save_checkpoint(build_model(settings).eval(), settings, path)
    return path


def seeded_network() -> tuple[torch.nn.Module, ModelSettings]:
    """Random Xception at 160 px with its head scaled so probabilities spread over ~0.1."""
    settings = ModelSettings(name="deepfake-verdicts-test", input_size=160)
    torch.manual_seed(0)
    network = build_model(settings).eval()
    with torch.no_grad():
        network.last_linear[-1].weight *= 2000.0
    return network, settings
