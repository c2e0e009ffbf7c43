"""Read samples out of a shard: tar members grouped by key, damage counted instead of raised.

A sample is the run of consecutive members sharing a key (``<key>.<suffix>``, the WebDataset
convention). A truncated or damaged tar ends its stream early and is counted once as
``truncated_shard``; a missing file is an error that names the path.
"""

from __future__ import annotations

import logging
import tarfile
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

Sample = tuple[str, dict[str, bytes]]


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

    def add(self, name: str, what: str, err: BaseException) -> None:
        """Count one skip of kind ``name`` (``corrupt_sample`` or ``truncated_shard``) and maybe warn."""
        self.values[self.slot * len(self.NAMES) + self.NAMES.index(name)] += 1
        now = time.monotonic()
        if now - self._last_warning >= self.period:
            self._last_warning = now
            log.warning("skipped %s %s: %s: %s (counts so far in this worker: %s)", name, what, type(err).__name__, err, self.local())

    def local(self) -> dict[str, int]:
        """This worker's counts."""
        base = self.slot * len(self.NAMES)
        return {name: int(self.values[base + i]) for i, name in enumerate(self.NAMES)}

    def totals(self) -> dict[str, int]:
        """Counts summed over every worker."""
        return {name: int(sum(self.values[s * len(self.NAMES) + i] for s in range(self.slots))) for i, name in enumerate(self.NAMES)}


def _split(name: str) -> tuple[str, str]:
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1 :]


def read_shard(path: str, counter: SkipCounter, keep: Callable[[int], bool] = lambda index: True) -> Iterator[Sample]:
    """Samples of the shard at ``path`` in order; ``keep(i)`` selects which sample indices are read."""
    try:
        with tarfile.open(path, mode="r|") as tar:
            key, members, index = None, {}, -1
            for info in tar:
                if not info.isfile():
                    continue
                member_key, suffix = _split(info.name)
                if member_key != key:
                    if key is not None and keep(index):
                        yield key, members
                    key, members, index = member_key, {}, index + 1
                if keep(index):
                    handle = tar.extractfile(info)
                    members[suffix] = handle.read() if handle else b""
            if key is not None and keep(index):
                yield key, members
    except FileNotFoundError:
        raise FileNotFoundError(f"shard not found: {path}") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        counter.add("truncated_shard", path, err)
