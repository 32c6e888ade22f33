"""Read TorchServe's config.properties (`key=value` lines; `#` comments)."""

from __future__ import annotations


def read_properties(text: str) -> dict[str, str]:
    """`key=value` lines of a config.properties, in order; comments and blank lines dropped."""
    pairs = (
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}
