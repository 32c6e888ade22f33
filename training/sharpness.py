"""Sharpness-aware minimization (Foret et al., ICLR 2021), as the Self-Blended Images paper
trains its detector: each step's gradient is taken at the weights moved `rho` along the
normalized gradient (the worst nearby point, to first order), then applied at the weights
themselves. Minima whose neighbourhood is low too are flatter, and flatter minima are the
ones that hold up on data unlike the training set. Twice the forward and backward work per
step."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class SharpnessAware:
    """Moves parameters to the worst nearby point (`ascend`) and back (`descend`)."""

    def __init__(self, parameters: Iterable[nn.Parameter], rho: float) -> None:
        self.parameters = list(parameters)
        self.rho = rho
        self._moves: list[tuple[nn.Parameter, torch.Tensor]] = []

    @torch.no_grad()
    def ascend(self) -> None:
        """w += rho * g / |g|, over every parameter that has a gradient (frozen ones do not)."""
        moving = [p for p in self.parameters if p.grad is not None]
        if not moving:
            return
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in moving])
        )
        scale = self.rho / (norm + 1e-12)
        self._moves = [(p, p.grad * scale) for p in moving]
        for parameter, move in self._moves:
            parameter.add_(move)

    @torch.no_grad()
    def descend(self) -> None:
        """Back to the weights `ascend` started from; the gradients stay those taken there."""
        for parameter, move in self._moves:
            parameter.sub_(move)
        self._moves = []


@contextmanager
def batch_norm_statistics_kept(network: nn.Module) -> Iterator[None]:
    """Batch norm normalizes by the batch as in training but leaves its running statistics
    alone: the second forward pass at the moved weights must not count the batch twice."""
    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
