"""Read samples out of a shard: tar members grouped by webdataset, damage counted and skipped, never slept on.

A sample is the run of consecutive members sharing a key (``<key>.<suffix>``): webdataset's
``group_by_keys`` groups the members into a webdataset sample dict (``__key__``, ``__url__`` and
one bytes value per suffix). The members come from :func:`tar_members`, a direct parser of the tar
stream (512-byte headers, checksums checked, pax and GNU long names): webdataset's own
``tar_file_expander`` (tarfile in stream mode) costs 4x more per sample, which made the training
pipeline 15-18% slower per core end to end (``benchmarks/data_throughput.py`` prints the
comparison). The parser also knows a tar cut short between members (no end-of-archive block),
which tarfile takes for a whole one. Added to webdataset's reading:

- a damaged shard ends its stream and is counted once as ``truncated_shard``, and so is a shard
  that holds fewer samples than its manifest says; a sample that fails to decode is counted as
  ``corrupt_sample`` through :meth:`SkipCounter.handler` (a webdataset handler), with a warning
  at most every ``period`` seconds where webdataset's ``warn_and_continue`` sleeps 0.5 s per error;
- the counts live in shared memory, one slot per DataLoader worker, summed in the main process.
"""

from __future__ import annotations

import logging
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from webdataset.tariterators import group_by_keys

log = logging.getLogger(__name__)

Sample = dict[str, Any]
# What a damaged tar raises while it is read (a bad header, a cut, a duplicate member's ValueError, ...)
TAR_DAMAGE = (tarfile.TarError, OSError, EOFError, ValueError, UnicodeDecodeError)
_ZERO_BLOCK = bytes(512)


class SkipCounter:
    """Counts skipped samples/shards in a shared array (one slot per loader worker) and warns at most every ``period`` s."""

    NAMES = ("corrupt_sample", "truncated_shard")

    def __init__(self, slots: int, period: float = 10.0) -> None:
        from multiprocessing.sharedctypes import RawArray

        self.slots = slots
        self.values = RawArray("q", slots * len(self.NAMES))
        self.period = period
        self._last_warning = 0.0
        self.slot = 0

    def add(self, name: str, message: str) -> None:
        """Count one skip of kind ``name`` (``corrupt_sample`` or ``truncated_shard``) and maybe warn with ``message``."""
        self.values[self.slot * len(self.NAMES) + self.NAMES.index(name)] += 1
        now = time.monotonic()
        if now - self._last_warning >= self.period:
            self._last_warning = now
            log.warning("skipped %s %s (counts so far in this worker: %s)", name, message, self.local())

    def handler(self, name: str) -> Callable[[BaseException], bool]:
        """A webdataset exception handler (``handler=`` of ``wds.map`` and friends) that counts ``name`` and continues."""

        def count_and_continue(err: BaseException) -> bool:
            self.add(name, describe(err))
            return True

        return count_and_continue

    def local(self) -> dict[str, int]:
        """This worker's counts."""
        base = self.slot * len(self.NAMES)
        return {name: int(self.values[base + i]) for i, name in enumerate(self.NAMES)}

    def totals(self) -> dict[str, int]:
        """Counts summed over every worker."""
        return {name: int(sum(self.values[s * len(self.NAMES) + i] for s in range(self.slots))) for i, name in enumerate(self.NAMES)}


def members(sample: Sample) -> dict[str, bytes]:
    """The tar members of a webdataset sample by suffix (``jpg``, ``json``, ``f0000.jpg``...), without its ``__key__``/``__url__``."""
    return {name: data for name, data in sample.items() if not name.startswith("__")}


def describe(err: BaseException) -> str:
    """An error as ``Type: message`` (webdataset appends its stream and URL to an exception's arguments: left out)."""
    return f"{type(err).__name__}: {err.args[0] if err.args else ''}"


class TruncatedTar(EOFError):
    """The tar ends inside a header or a member, or without its end-of-archive block."""


def _octal(field: bytes, empty: int) -> int:
    """A header's octal number field; ``empty`` when blank, -1 when not a number."""
    digits = field.strip(b"\0 ")
    try:
        return int(digits, 8) if digits else empty
    except ValueError:
        return -1


def tar_members(stream: BinaryIO, path: str) -> Iterator[dict[str, Any]]:
    """Each regular file of a tar stream as webdataset's file dict (``fname``, ``data``, ``__url__``).

    Checksums are checked; pax and GNU long names are followed. A tar that stops without its
    end-of-archive block was cut short: :class:`TruncatedTar`.
    """
    long_name = None
    while True:
        header = stream.read(512)
        if header == _ZERO_BLOCK:
            return
        if not header:
            raise TruncatedTar("ends without the end-of-archive block (cut short)")
        if len(header) < 512:
            raise TruncatedTar("ends inside a tar header")
        if _octal(header[148:156], -1) != sum(header[:148]) + 256 + sum(header[156:]):
            raise tarfile.HeaderError("bad tar header checksum (or not a tar)")
        size = _octal(header[124:136], 0)
        if size < 0:
            raise tarfile.HeaderError("bad tar header size")
        kind = header[156:157]
        data = stream.read(size)
        if len(data) < size:
            raise TruncatedTar("ends inside a member")
        stream.read(-size % 512)
        if kind == b"L":  # GNU long name for the next member
            long_name = data.rstrip(b"\0").decode()
        elif kind == b"x":  # pax header: the next member's path may be in it
            for record in data.decode().splitlines():
                if " path=" in record:
                    long_name = record.split(" path=", 1)[1]
        elif kind in (b"0", b"\0"):
            prefix = header[345:500].rstrip(b"\0") if header[257:262] == b"ustar" else b""
            name = long_name or (prefix + b"/" if prefix else b"").decode() + header[:100].rstrip(b"\0").decode()
            long_name = None
            yield {"fname": name, "data": data, "__url__": path}
        else:
            long_name = None


def shard_samples(path: str) -> Iterator[Sample]:
    """Every sample of the shard at ``path`` in order (webdataset sample dicts); a damaged tar raises one of :data:`TAR_DAMAGE`."""
    with open(path, "rb", buffering=1 << 20) as stream:
        yield from group_by_keys(tar_members(stream, path))


def read_shard(path: str, expected: int, counter: SkipCounter, keep: Callable[[int], bool] = lambda index: True) -> Iterator[Sample]:
    """The samples of a shard (``keep(i)`` selects sample indices); damage ends the stream and is counted.

    ``expected`` is the shard's sample count in the manifest: a whole tar with fewer samples is
    counted as damaged too (its samples are still read).
    """
    read = 0
    try:
        for sample in shard_samples(path):
            if keep(read):
                yield sample
            read += 1
    except FileNotFoundError:
        raise FileNotFoundError(f"shard not found: {path}") from None
    except TAR_DAMAGE as err:
        counter.add("truncated_shard", f"{path}: {describe(err)}")
        return
    if read < expected:
        counter.add("truncated_shard", f"{path}: {read} samples, the manifest says {expected}")
