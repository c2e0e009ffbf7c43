"""Who reads the console: a person at a terminal, or a log file.

A progress bar redraws one line in place: a terminal shows it, while a SLURM log or a pipe keeps
every redraw as carriage-return fragments. So bars are drawn only when the stream is a terminal
with a width and the process is not a SLURM job; everywhere else the stages print one line per
report. (A pseudo-terminal of width 0, as ``docker exec -t`` or ``script`` may open, draws an
empty bar: it counts as a log.)
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

SLURM_JOB = "SLURM_JOB_ID"


def interactive_console(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: stdout) is a terminal and this is not a SLURM job: draw progress bars."""
    stream = sys.stdout if stream is None else stream
    if SLURM_JOB in os.environ or not getattr(stream, "isatty", lambda: False)():
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False
