"""Server storage: the `Storage` interface (`base`) and its implementations (`sqlite`)."""

from doorless.server.storage.base import Storage

__all__ = ["Storage"]
