"""`Closing`: ``with source_or_sink:`` closes it, for every file and device of the package."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """A media source or sink whose ``close`` runs at the end of a ``with`` block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["Closing"]
