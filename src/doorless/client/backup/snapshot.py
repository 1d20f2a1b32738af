"""What a backup holds (`Snapshot`) and its plaintext encoding, a sequence of records.

::

    enum { end(0), meta(1), table(2), row(3), group(4), file(5) } RecordType;
    struct { RecordType type; opaque body<V>; } Record;

    meta:  uint64 created_at; uint16 schema_version; opaque username<V>; opaque device_id<V>;
           opaque server_url<V>;
    table: opaque name<V>; opaque columns<V><V>;      then one row record per row
    row:   Value values<V>;  Value: uint8 tag (0 null, 1 integer, 2 text, 3 blob) + value
    group: opaque group_id<V>; opaque conversation_info<V>; opaque disappearing<V>;
    file:  opaque name<V>; opaque data<V>;
    end:   empty; nothing may follow it

The records travel inside the authenticated chunks of `doorless.client.backup.format`, so
their decoder only has to be strict (a typed error for anything off), not suspicious.
MLS group states are never part of a snapshot: after a restore they would be stale (and
reusing their keys would break forward secrecy); a ``group`` record keeps only what a
conversation shows (its name, kind and timer) until the restored device rejoins it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from doorless.client.backup.errors import BackupCorrupt
from doorless.client.store.snapshot import SqlValue
from doorless.codec import Reader, Writer
from doorless.errors import DecodeError

_INT64 = 1 << 64


class RecordType(IntEnum):
    end = 0
    meta = 1
    table = 2
    row = 3
    group = 4
    file = 5


class ValueTag(IntEnum):
    null = 0
    integer = 1
    text = 2
    blob = 3


@dataclass(frozen=True, slots=True)
class Meta:
    created_at: int
    schema_version: int
    username: str
    device_id: str
    server_url: str


@dataclass(frozen=True, slots=True)
class TableDump:
    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[SqlValue, ...], ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class GroupDisplay:
    """What a conversation shows without its MLS state (GroupContext extension data)."""

    group_id: bytes
    conversation_info: bytes
    disappearing: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: Meta
    tables: tuple[TableDump, ...]
    groups: tuple[GroupDisplay, ...]
    files: tuple[tuple[str, bytes], ...] = field(repr=False)

    def table(self, name: str) -> TableDump | None:
        return next((t for t in self.tables if t.name == name), None)


# --- encoding -----------------------------------------------------------------------------


def _record(kind: RecordType, body: Writer) -> bytes:
    w = Writer()
    w.push_uint8(kind)
    w.push_opaque(body.getvalue())
    return w.getvalue()


def _push_text(w: Writer, text: str) -> None:
    w.push_opaque(text.encode("utf-8"))


def _push_value(w: Writer, value: SqlValue) -> None:
    if value is None:
        w.push_uint8(ValueTag.null)
    elif isinstance(value, bool):  # never in the store; a bool would be a bug upstream
        raise TypeError("booleans are stored as integers")
    elif isinstance(value, int):
        w.push_uint8(ValueTag.integer)
        w.push_uint64(value % _INT64)  # two's complement of SQLite's signed 64-bit integers
    elif isinstance(value, str):
        w.push_uint8(ValueTag.text)
        _push_text(w, value)
    else:
        w.push_uint8(ValueTag.blob)
        w.push_opaque(bytes(value))


def encode_meta(meta: Meta) -> bytes:
    w = Writer()
    w.push_uint64(meta.created_at)
    w.push_uint16(meta.schema_version)
    for text in (meta.username, meta.device_id, meta.server_url):
        _push_text(w, text)
    return _record(RecordType.meta, w)


def encode_table(name: str, columns: tuple[str, ...]) -> bytes:
    w = Writer()
    _push_text(w, name)
    w.push_vector(columns, _push_text)
    return _record(RecordType.table, w)


def encode_row(row: tuple[SqlValue, ...]) -> bytes:
    w = Writer()
    w.push_vector(row, _push_value)
    return _record(RecordType.row, w)


def encode_group(group: GroupDisplay) -> bytes:
    w = Writer()
    w.push_opaque(group.group_id)
    w.push_opaque(group.conversation_info)
    w.push_opaque(group.disappearing)
    return _record(RecordType.group, w)


def encode_file(name: str, data: bytes) -> bytes:
    w = Writer()
    _push_text(w, name)
    w.push_opaque(data)
    return _record(RecordType.file, w)


def encode_end() -> bytes:
    return _record(RecordType.end, Writer())


def encode_snapshot(snapshot: Snapshot) -> Iterator[bytes]:
    """The records of a whole snapshot, in order (used by tests; backups stream them)."""
    yield encode_meta(snapshot.meta)
    for table in snapshot.tables:
        yield encode_table(table.name, table.columns)
        for row in table.rows:
            yield encode_row(row)
    for group in snapshot.groups:
        yield encode_group(group)
    for name, data in snapshot.files:
        yield encode_file(name, data)
    yield encode_end()


# --- decoding -----------------------------------------------------------------------------


def _pull_text(r: Reader) -> str:
    try:
        return r.pull_opaque().decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("text is not UTF-8") from None


def _pull_value(r: Reader) -> SqlValue:
    tag = r.pull_uint8()
    if tag == ValueTag.null:
        return None
    if tag == ValueTag.integer:
        v = r.pull_uint64()
        return v - _INT64 if v >= _INT64 >> 1 else v
    if tag == ValueTag.text:
        return _pull_text(r)
    if tag == ValueTag.blob:
        return r.pull_opaque()
    raise DecodeError(f"unknown value tag {tag}")


def _body(r: Reader) -> tuple[RecordType, Reader]:
    kind = r.pull_uint8()
    try:
        record = RecordType(kind)
    except ValueError:
        raise DecodeError(f"unknown record type {kind}") from None
    return record, Reader(r.pull_opaque())


def decode_snapshot(data: bytes) -> Snapshot:
    """The snapshot in ``data``; `BackupCorrupt` for anything malformed."""
    try:
        return _decode(Reader(data))
    except DecodeError as e:
        raise BackupCorrupt(f"the backup's content is malformed: {e}") from None


def _decode(r: Reader) -> Snapshot:
    kind, body = _body(r)
    if kind is not RecordType.meta:
        raise DecodeError("a backup starts with its meta record")
    meta = Meta(
        body.pull_uint64(),
        body.pull_uint16(),
        _pull_text(body),
        _pull_text(body),
        _pull_text(body),
    )
    body.expect_end()
    tables: list[TableDump] = []
    groups: list[GroupDisplay] = []
    files: list[tuple[str, bytes]] = []
    current: tuple[str, tuple[str, ...], list[tuple[SqlValue, ...]]] | None = None

    def close_table() -> None:
        if current is not None:
            tables.append(TableDump(current[0], current[1], tuple(current[2])))

    while True:
        kind, body = _body(r)
        if kind is RecordType.row:
            if current is None:
                raise DecodeError("a row outside a table")
            row = tuple(body.pull_vector(_pull_value))
            if len(row) != len(current[1]):
                raise DecodeError(f"a row of {current[0]} has the wrong number of values")
            current[2].append(row)
        elif kind is RecordType.table:
            close_table()
            name = _pull_text(body)
            columns = tuple(body.pull_vector(_pull_text))
            if not columns or any(t.name == name for t in tables):
                raise DecodeError(f"table {name!r} is empty of columns or repeated")
            current = (name, columns, [])
        else:
            close_table()
            current = None
            if kind is RecordType.group:
                groups.append(
                    GroupDisplay(body.pull_opaque(), body.pull_opaque(), body.pull_opaque())
                )
            elif kind is RecordType.file:
                files.append((_pull_text(body), body.pull_opaque()))
            elif kind is RecordType.end:
                body.expect_end()
                break
            else:
                raise DecodeError("a second meta record")
        body.expect_end()
    r.expect_end()
    return Snapshot(meta, tuple(tables), tuple(groups), tuple(files))


__all__ = [
    "GroupDisplay",
    "Meta",
    "RecordType",
    "Snapshot",
    "TableDump",
    "decode_snapshot",
    "encode_end",
    "encode_file",
    "encode_group",
    "encode_meta",
    "encode_row",
    "encode_snapshot",
    "encode_table",
]
