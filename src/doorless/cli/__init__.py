"""The ``doorless`` program (docs/cli.md).

Importing this package makes a Ctrl-C that reaches the top level (while the program is still
starting, before a command's own handling) end it the documented way: ``error: interrupted``
on stderr and exit status 130, never a traceback. Other uncaught exceptions go to the hook that
was there before. A Ctrl-C that lands where Python cannot raise it (in a callback the import
machinery runs while the commands load; Python would print "Exception ignored in ..." and go
on) is raised again in the main thread, where it ends the program the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import TracebackType

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

_previous_hook = sys.excepthook
_previous_unraisable_hook = sys.unraisablehook


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


def _interrupt_again(unraisable: sys.UnraisableHookArgs) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        # SIGINT again, to the main thread (so that a wait it is in ends), sent from another
        # thread: sent from here it would be raised at once, inside this hook, and be ignored.
        main = threading.main_thread().ident
        assert main is not None
        again = threading.Timer(0.01, signal.pthread_kill, (main, signal.SIGINT))
        again.daemon = True
        again.start()
        return
    _previous_unraisable_hook(unraisable)


sys.excepthook = _interrupted_quietly
sys.unraisablehook = _interrupt_again
