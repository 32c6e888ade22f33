"""Grad-CAM for the fake class: which parts of a face crop pushed the network towards "fake".

Captum's LayerGradCam on Xception's last convolutional block (`GRAD_CAM_LAYER` in
model/network.py), upsampled to the crop; the same network and batch code as classification.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from model.network import GRAD_CAM_LAYER, ModelSettings
from model.tensors import crops_to_batch

OVERLAY_WEIGHT = 0.45  # share of the colour map in the overlay; the rest is the crop


def grad_cam(
    network: nn.Module, settings: ModelSettings, face_crops: Sequence[np.ndarray]
) -> np.ndarray:
    """(N, S, S) float32 heat maps in [0, 1] for the fake logit, one per crop (S = input size).
    A map that is zero everywhere means no region raised the fake score."""
    if len(face_crops) == 0:
        return np.zeros((0, settings.input_size, settings.input_size), dtype=np.float32)
    batch = crops_to_batch(face_crops, settings).requires_grad_(True)
    explainer = LayerGradCam(network, getattr(network, GRAD_CAM_LAYER))
    with torch.enable_grad():
        attributions = explainer.attribute(
            batch, target=settings.fake_index, relu_attributions=True
        )
    size = settings.input_size
    maps = LayerAttribution.interpolate(attributions.detach(), (size, size), "bilinear")
    maps = maps[:, 0].clamp_(min=0)
    peaks = maps.flatten(1).amax(dim=1).clamp_(min=1e-12).view(-1, 1, 1)
    return (maps / peaks).numpy().astype(np.float32)


def heatmap_grey(heatmap: np.ndarray) -> np.ndarray:
    """(S, S) uint8 of an (S, S) map in [0, 1]: 255 is the strongest evidence for "fake"."""
    return np.clip(heatmap * 255.0 + 0.5, 0, 255).astype(np.uint8)


def heatmap_rgb(heatmap: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 RGB colour map (JET: blue cold, red hot) of an (S, S) map in [0, 1]."""
    colours = cv2.applyColorMap(heatmap_grey(heatmap), cv2.COLORMAP_JET)
    return cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)


def overlay(crop: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The crop with the colour map blended over it, at the heat map's size."""
    size = heatmap.shape[0]
    if crop.shape[:2] != (size, size):
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.addWeighted(crop, 1.0 - OVERLAY_WEIGHT, heatmap_rgb(heatmap), OVERLAY_WEIGHT, 0.0)
