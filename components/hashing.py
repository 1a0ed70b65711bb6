"""SHA-256 of files, read in 1 MiB chunks: checkpoints, exported generators and feature-network
weights are checked against the digests recorded when they were written."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file, from one read."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def file_sha256(path: str | Path) -> str:
    return file_digest(path)[0]
