"""Atomic file writes now live in ``pathosam_wsi/files.py``; this name stays for old imports."""

from __future__ import annotations

from pathosam_wsi.files import atomic_write

__all__ = ["atomic_write"]
