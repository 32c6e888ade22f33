"""TorchServe adapter over model/: bytes in, JSON out (built in the serving issue)."""
