"""Where the blend is: Face X-ray's boundary supervision beside the classifier's loss.

Face X-ray (Li et al., CVPR 2020) asks a network for the boundary of the region blended into a
face, `4 m (1 - m)` of the blending mask m, and for nothing (zeros) on a real face. The boundary
is local evidence no identity supplies: the network has to compare the inner face with its
surroundings. Here a 1x1 convolution reads one block of Xception (a forward hook, so the
network the server runs is unchanged and the head is never saved with it) and is trained on
each self-blend's boundary, pooled to that block's grid; cross-entropy still trains the
verdict.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

# Xception's middle flow: 728 channels on a 14 x 14 grid at 224 px, cells of 16 px, each
# seeing well beyond its own cell (both sides of a blend's edge).
BOUNDARY_BLOCK = "block7"
BOUNDARY_CHANNELS = 728
HARD_EDGE_SIGMA = 0.02  # of the crop's side


def boundary_map(blend_mask: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """(H, W) float32 target: `4 m (1 - m)` of the blend mask scaled to peak 1 (1 on the edge
    of the blended region, 0 inside and outside it); zeros for a real crop (`None`)."""
    if blend_mask is None:
        return np.zeros((height, width), np.float32)
    if not np.any((blend_mask > 0) & (blend_mask < blend_mask.max())):
        # A hard mask (a Poisson blend's region): its edge gets a width, as Face X-ray blurs.
        blend_mask = cv2.GaussianBlur(blend_mask, (0, 0), sigmaX=HARD_EDGE_SIGMA * width)
    peak = float(blend_mask.max())
    scaled = blend_mask / peak if peak > 0 else blend_mask
    return (4.0 * scaled * (1.0 - scaled)).astype(np.float32)


class BoundaryHead(nn.Module):
    """Predicts the boundary map from `block`'s output, kept by a forward hook on `network`."""

    def __init__(self, network: nn.Module, block: str = BOUNDARY_BLOCK) -> None:
        super().__init__()
        self.predict = nn.Conv2d(BOUNDARY_CHANNELS, 1, kernel_size=1)
        self._features: torch.Tensor | None = None
        getattr(network, block).register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._features = output

    def loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the last training forward's boundary logits against
        `targets` (N, H, W) at crop resolution, area-pooled to the block's grid; a crop whose
        target is NaN (a real swap: where it was blended is unknown) is left out."""
        if self._features is None:
            raise RuntimeError("no training forward pass to read the boundary from")
        logits = self.predict(self._features.float())
        pooled = functional.adaptive_avg_pool2d(targets.unsqueeze(1), logits.shape[-2:])
        known = ~torch.isnan(pooled.flatten(1)).any(dim=1)
        if not known.any():
            return logits.sum() * 0.0
        return functional.binary_cross_entropy_with_logits(logits[known], pooled[known])
