"""Sample keys that every reader accepts, made from any file name, and the file name kept readable.

A key names a sample's tar members (``<key>.<suffix>``): it must be ASCII without dots or slashes
(WebDataset splits the member name at the first dot) and short enough that the longest member
name (``<key>_c00000_f000.f0000.jpg``) fits the 100 bytes of a USTAR name. File names are
anything the file system allows (non-UTF-8 bytes, emoji, 200 characters): such a name keeps a
readable ASCII prefix and gains a hash of its exact bytes, so two different files never share a
key. The original relative path is stored in the sample's labels as ``origin``
(:func:`display_path`).
"""

from __future__ import annotations

import hashlib
import os
import re

MAX_KEY = 64
"""Longest key made from a path; ``_c<clip>`` and ``_f<face>`` suffixes and member suffixes still fit in 100 bytes."""

MEDIA_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".mp4", ".avi", ".mkv", ".mov", ".webm")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_BENIGN = re.compile(r"[/\\. ]")


def display_path(relative: str) -> str:
    """``relative`` as printable UTF-8 text: undecodable bytes of a file name become ``\\xNN`` escapes."""
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def sample_key(relative: str) -> str:
    """A safe key for the media at ``relative``: the path without its media suffix, separators, dots
    and spaces as ``_``; any other character, or a key longer than :data:`MAX_KEY`, adds a hash of the path's bytes."""
    stem = relative[: -len(os.path.splitext(relative)[1])] if relative.lower().endswith(MEDIA_SUFFIXES) else relative
    readable = _BENIGN.sub("_", stem)
    key = _UNSAFE.sub("_", readable)
    if key == readable and 0 < len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha1(os.fsencode(relative)).hexdigest()[:12]
    return f"{key[: MAX_KEY - len(digest) - 1]}-{digest}"
