"""Turns videos into a trained checkpoint through model/'s pipeline (the training issue)."""
