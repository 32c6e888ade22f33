"""Packaging and deployment: the .mar archive, TorchServe config, KServe."""
