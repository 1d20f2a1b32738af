"""The ``doorless`` program (docs/cli.md).

Importing this package makes a Ctrl-C that reaches the top level (while the program is still
starting, before a command's own handling) end it the documented way: ``error: interrupted``
on stderr and exit status 130, never a traceback. Other uncaught exceptions go to the hook that
was there before.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

_previous_hook = sys.excepthook


def _interrupted_quietly(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        try:
            sys.stderr.write("error: interrupted\n")
            sys.stderr.flush()
        finally:
            os._exit(EXIT_INTERRUPTED)  # the interpreter would re-raise SIGINT: -2, not 130
    _previous_hook(kind, value, tb)


sys.excepthook = _interrupted_quietly
