"""Command-line tools beside the server: scan videos, convert weights into checkpoints."""
