"""The rescalings before int8 leave the network's fp32 output as it was and even out the
channels the quantizer sees."""

from __future__ import annotations

import torch

from model.network import ModelSettings, build_model
from training.equalize import depthwise_ranges, equalized, separable_convs


def trained_like_network() -> torch.nn.Module:
    """A seeded Xception whose norms spread their channels over three orders of magnitude, as
    training leaves them (freshly built norms are all alike)."""
    torch.manual_seed(0)
    network = build_model(ModelSettings(input_size=96))
    generator = torch.Generator().manual_seed(1)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            size = module.num_features
            module.weight.data = 10 ** (torch.rand(size, generator=generator) * 3 - 2)
            module.bias.data = torch.randn(size, generator=generator) * 0.1
            module.running_mean.data = torch.randn(size, generator=generator) * 0.1
    return network.eval()


def spread(ranges: list[torch.Tensor]) -> float:
    """The median over layers of a layer's widest channel over its median channel."""
    ratios = [(r.max() / r.clamp_min(1e-6).median()).item() for r in ranges]
    return sorted(ratios)[len(ratios) // 2]


def test_the_equalized_network_gives_the_same_logits_with_even_depthwise_outputs():
    network = trained_like_network()
    batches = [
        torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(k)) for k in (2, 3)
    ]
    changed = equalized(network, batches)
    probe = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before, after = network(probe), changed(probe)
    assert torch.allclose(before, after, rtol=1e-3, atol=1e-4 * before.abs().max().item())
    ranges_before = depthwise_ranges(network, batches)
    ranges_after = depthwise_ranges(changed, batches)
    assert len(ranges_after) == len(separable_convs(network)) == 34  # 12 blocks' 32 + exit's 2
    assert spread(ranges_after) < spread(ranges_before) / 2
