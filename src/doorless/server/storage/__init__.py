"""Server storage: the `Storage` interface and its SQLite and PostgreSQL implementations.

* `base`: the interface, its record types and `Rejected` exceptions (what callers import);
* `schema`: the tables and versioned migrations, once, with a per-dialect type map;
* `executor`: the `Executor` protocol and `Tx`, the seam between shared SQL and a driver;
* `rows`: column lists and row -> record mappers;
* `sql`: `SqlStorage`, every operation whose SQL both databases share, over `sql_hooks`
  (`SqlHooks`: what a dialect provides, shared pieces), `sql_safety` (franking keys, reports,
  blocks) and `sql_kt` (the transparency log);
* `sqlite`, `postgres`: connections, transactions and the operations that differ.
"""

from doorless.server.storage.base import Storage

__all__ = ["Storage"]
