"""The tables, once: versioned migrations written with a dialect type map.

Owns the schema of both stores. Each migration is a list of statements in which column types
are placeholders (``{int}``, ``{blob}``, ``{serial}``, ``{bool}``) that `render` replaces with
the dialect's type; a statement only one dialect needs is wrapped in `Only`. The rendered text
is exactly what `SQLiteStorage` and `PostgresStorage` applied before they shared it, so a
database created by earlier code opens, migrates by the same version numbers, and ends with
the same schema.

Never edit a released migration: append a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

# How each type placeholder is spelled. ``serial``: an auto-assigned 64-bit key (SQLite's
# ``INTEGER PRIMARY KEY`` is the rowid); ``bool``: SQLite stores 0/1.
TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"int": "INTEGER", "blob": "BLOB", "serial": "INTEGER", "bool": "INTEGER"},
    "postgres": {"int": "BIGINT", "blob": "BYTEA", "serial": "BIGSERIAL", "bool": "BOOLEAN"},
}


@dataclass(frozen=True, slots=True)
class Only:
    """A statement of one dialect only (storage tuning, an index the other does not need)."""

    dialect: Dialect
    sql: str


Statement = str | Only

# `doorless.server.storage.pg_send`: the statements of `PostgresStorage._deliver` (a send
# without a validated group update) as one function, so that a send is one statement, one round
# trip and one implicit transaction, committed before its result reaches the server (I5). The
# same order and locks as `_deliver` (sent -> group_epochs -> devices -> payloads); refusals
# are raised (the statement rolls back whole) with SQLSTATEs of class DL, each carrying what
# the matching `Rejected` error needs in DETAIL:
#   DL001 epoch conflict (DETAIL: the group's current epoch), DL002 idempotency conflict,
#   DL003 unknown or revoked recipients (DETAIL: their ids, space-separated),
#   DL004 the group's next franking number is not the one the caller stamped with (DETAIL:
#   the number to stamp with; the caller stamps again and retries).
# A duplicate answers (true, the epoch recorded with the first send) and writes nothing.
DELIVER_FUNCTION = """
CREATE FUNCTION doorless_deliver(
    p_sender TEXT, p_message_id TEXT, p_digest BYTEA, p_now BIGINT,
    p_group_id BYTEA, p_epoch BIGINT, p_is_commit BOOLEAN,
    p_stamps INTEGER, p_first_seq BIGINT,
    p_wanted TEXT[], p_counts INTEGER[],
    p_data BYTEA[], p_frank BYTEA[], p_remaining INTEGER[],
    p_part INTEGER[], p_device TEXT[], p_offset INTEGER[],
    OUT o_duplicate BOOLEAN, OUT o_epoch BIGINT
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_digest BYTEA;
    v_current BIGINT;
    v_first BIGINT;
    v_devices TEXT[];
    v_bases BIGINT[];
    v_id BIGINT;
BEGIN
    o_duplicate := false;
    o_epoch := CASE WHEN p_group_id IS NULL THEN NULL
                    WHEN p_is_commit THEN p_epoch + 1 ELSE p_epoch END;
    -- The idempotency row first: a racing retry waits on its key, then answers duplicate.
    INSERT INTO sent (sender_device_id, message_id, digest, group_epoch, created_at)
    VALUES (p_sender, p_message_id, p_digest, o_epoch, p_now) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT s.digest, s.group_epoch INTO v_digest, o_epoch FROM sent s
        WHERE s.sender_device_id = p_sender AND s.message_id = p_message_id;
        IF NOT FOUND THEN  -- purged in between: the caller retries as the first
            RAISE EXCEPTION 'idempotency record vanished' USING ERRCODE = 'serialization_failure';
        END IF;
        IF v_digest <> p_digest THEN
            RAISE EXCEPTION 'message id already used for different content'
                USING ERRCODE = 'DL002';
        END IF;
        o_duplicate := true;
        RETURN;
    END IF;
    -- The epoch gate (`PostgresStorage._check_gate`) and the franking numbers.
    IF p_group_id IS NOT NULL THEN
        INSERT INTO group_epochs (group_id, epoch, next_seq)
        VALUES (p_group_id, o_epoch, 1 + p_stamps) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            v_first := 1;
        ELSIF p_is_commit THEN
            UPDATE group_epochs SET epoch = o_epoch, next_seq = next_seq + p_stamps
            WHERE group_id = p_group_id AND epoch = p_epoch
            RETURNING next_seq - p_stamps INTO v_first;
            IF NOT FOUND THEN
                SELECT epoch INTO v_current FROM group_epochs WHERE group_id = p_group_id;
                RAISE EXCEPTION 'commit is for epoch %, the group is at epoch %',
                    p_epoch, v_current USING ERRCODE = 'DL001', DETAIL = v_current::TEXT;
            END IF;
        ELSE
            IF p_stamps > 0 THEN
                UPDATE group_epochs SET next_seq = next_seq + p_stamps
                WHERE group_id = p_group_id RETURNING epoch, next_seq - p_stamps
                INTO v_current, v_first;
            ELSE
                SELECT epoch INTO v_current FROM group_epochs
                WHERE group_id = p_group_id FOR SHARE;
            END IF;
            IF v_current <> p_epoch THEN
                RAISE EXCEPTION 'message is for epoch %, the group is at epoch %',
                    p_epoch, v_current USING ERRCODE = 'DL001', DETAIL = v_current::TEXT;
            END IF;
        END IF;
        IF p_stamps > 0 AND v_first IS DISTINCT FROM p_first_seq THEN
            RAISE EXCEPTION 'the group''s next franking number moved'
                USING ERRCODE = 'DL004', DETAIL = v_first::TEXT;
        END IF;
        -- Called only without a validated update: a commit to a registered group is refused.
        IF p_is_commit AND EXISTS (SELECT 1 FROM group_states WHERE group_id = p_group_id) THEN
            RAISE EXCEPTION 'the group''s state moved on; read it again'
                USING ERRCODE = 'DL001', DETAIL = p_epoch::TEXT;
        END IF;
    END IF;
    IF cardinality(p_wanted) = 0 THEN
        RETURN;
    END IF;
    -- Recipient rows locked in id order while their next_seq advances (seqs in commit order).
    WITH locked AS MATERIALIZED (
        SELECT device_id FROM devices WHERE device_id = ANY(p_wanted)
        AND revoked_at IS NULL ORDER BY device_id FOR NO KEY UPDATE
    ), bumped AS (
        UPDATE devices d SET next_seq = d.next_seq + c.n
        FROM unnest(p_wanted, p_counts) AS c (device_id, n)
        WHERE d.device_id = c.device_id AND d.device_id IN (SELECT device_id FROM locked)
        RETURNING d.device_id, d.next_seq - c.n AS base
    )
    SELECT array_agg(b.device_id), array_agg(b.base) INTO v_devices, v_bases FROM bumped b;
    IF coalesce(cardinality(v_devices), 0) < cardinality(p_wanted) THEN
        RAISE EXCEPTION 'unknown or revoked recipients' USING ERRCODE = 'DL003',
            DETAIL = array_to_string(ARRAY(
                SELECT w FROM unnest(p_wanted) AS w
                WHERE w <> ALL (coalesce(v_devices, ARRAY[]::TEXT[])) ORDER BY w
            ), ' ');
    END IF;
    -- Each part with recipients: its payload and its queue entries.
    FOR i IN 1 .. cardinality(p_data) LOOP
        CONTINUE WHEN p_remaining[i] = 0;
        INSERT INTO payloads (data, remaining, frank)
        VALUES (p_data[i], p_remaining[i], p_frank[i]) RETURNING id INTO v_id;
        INSERT INTO queue (device_id, seq, payload_id, received_at)
        SELECT r.d, b.base + r.o, v_id, p_now
        FROM unnest(p_part, p_device, p_offset) AS r (pt, d, o)
        JOIN unnest(v_devices, v_bases) AS b (d, base) ON b.d = r.d
        WHERE r.pt = i;
    END LOOP;
END
$fn$
"""

# `PostgresStorage._ack_batch`: a batch of acks (``(device, seq)`` pairs from any number of
# sockets) as one statement, one round trip and one implicit transaction, with the statements
# of `SqlStorage.revoke_device` and `PostgresStorage._release_payloads`: ``DELETE ... RETURNING``
# hands each entry to one transaction only, and each payload's ``remaining`` is decremented
# under its row lock, taken in id order. Returns the entries deleted (the caller counts them
# per ack). ``synchronous_commit`` is off for this transaction only, the one write that need
# not wait for the disk: an ack lost in a crash means a message pushed again, which clients
# deduplicate (I5 is about the opposite: never losing what a sender was told is queued).
ACK_FUNCTION = """
CREATE FUNCTION doorless_ack(
    p_device TEXT[], p_seq BIGINT[], OUT o_device TEXT[], OUT o_seq BIGINT[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_ids BIGINT[];
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH gone AS (
        DELETE FROM queue q USING unnest(p_device, p_seq) AS a (d, s)
        WHERE q.device_id = a.d AND q.seq = a.s
        RETURNING q.device_id, q.seq, q.payload_id
    )
    SELECT array_agg(g.device_id), array_agg(g.seq), array_agg(g.payload_id)
    INTO o_device, o_seq, v_ids FROM gone g;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    WITH released AS (
        SELECT id, count(*)::INTEGER AS n FROM unnest(v_ids) AS r (id) GROUP BY id
    ), locked AS MATERIALIZED (
        SELECT p.id FROM payloads p WHERE p.id IN (SELECT id FROM released)
        ORDER BY p.id FOR NO KEY UPDATE
    )
    UPDATE payloads p SET remaining = p.remaining - r.n FROM released r
    WHERE p.id = r.id AND p.id IN (SELECT id FROM locked);
    DELETE FROM payloads WHERE id = ANY(v_ids) AND remaining <= 0;
END
$fn$
"""


def _returning_seqs(function: str) -> str:
    """Migration 8's ``doorless_deliver``: migration 6's, also returning the recipients it
    queued for and each one's first new seq (``o_devices``, ``o_bases``; a device's entries of
    one send are consecutive), from which `pg_send.DeliverCall` builds `DeliveryResult.queued`
    without a read."""
    out_params = "OUT o_duplicate BOOLEAN, OUT o_epoch BIGINT"
    bumped = "INTO v_devices, v_bases FROM bumped b;"
    assert function.count(out_params) == 1 and function.count(bumped) == 1
    return function.replace(
        out_params, out_params + ", OUT o_devices TEXT[], OUT o_bases BIGINT[]"
    ).replace(bumped, bumped + "\n    o_devices := v_devices;\n    o_bases := v_bases;")


_MIGRATIONS: tuple[tuple[int, str, tuple[Statement, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE accounts (username TEXT PRIMARY KEY, created_at {int} NOT NULL)",
            """CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_key {blob} NOT NULL UNIQUE,
                approved_by TEXT,
                approval_signature {blob} NOT NULL,
                created_at {int} NOT NULL,
                revoked_at {int},
                next_seq {int} NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX devices_by_username ON devices (username)",
            """CREATE TABLE invites (
                code_hash {blob} PRIMARY KEY,
                created_at {int} NOT NULL,
                expires_at {int} NOT NULL
            )""",
            """CREATE TABLE challenges (
                nonce_hash {blob} PRIMARY KEY,
                expires_at {int} NOT NULL
            )""",
            """CREATE TABLE tokens (
                token_hash {blob} PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                expires_at {int} NOT NULL
            )""",
            "CREATE INDEX tokens_by_device ON tokens (device_id)",
            """CREATE TABLE links (
                code TEXT PRIMARY KEY,
                username TEXT NOT NULL REFERENCES accounts (username),
                device_id TEXT NOT NULL,
                device_key {blob} NOT NULL,
                created_at {int} NOT NULL,
                expires_at {int} NOT NULL,
                approved_at {int}
            )""",
            """CREATE TABLE key_packages (
                id {serial} PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                data {blob} NOT NULL,
                last_resort {bool} NOT NULL
            )""",
            "CREATE INDEX key_packages_by_device ON key_packages (device_id, last_resort, id)",
            """CREATE TABLE group_epochs (
                group_id {blob} PRIMARY KEY,
                epoch {int} NOT NULL
            )""",
            """CREATE TABLE payloads (
                id {serial} PRIMARY KEY,
                data {blob} NOT NULL,
                remaining INTEGER NOT NULL
            )""",
            # Ciphertext does not compress: do not spend CPU trying.
            Only("postgres", "ALTER TABLE payloads ALTER COLUMN data SET STORAGE EXTERNAL"),
            """CREATE TABLE queue (
                device_id TEXT NOT NULL REFERENCES devices (device_id),
                seq {int} NOT NULL,
                payload_id {int} NOT NULL REFERENCES payloads (id),
                received_at {int} NOT NULL,
                PRIMARY KEY (device_id, seq)
            )""",
            Only("postgres", "CREATE INDEX queue_by_payload ON queue (payload_id)"),
            """CREATE TABLE sent (
                sender_device_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                digest {blob} NOT NULL,
                group_epoch {int},
                created_at {int} NOT NULL,
                PRIMARY KEY (sender_device_id, message_id)
            )""",
            "CREATE INDEX sent_by_age ON sent (created_at)",
            """CREATE TABLE attachments (
                attachment_id TEXT PRIMARY KEY,
                size {int} NOT NULL,
                created_at {int} NOT NULL,
                expires_at {int} NOT NULL
            )""",
            "CREATE INDEX attachments_by_expiry ON attachments (expires_at)",
        ),
    ),
    (
        2,
        "key transparency",
        (
            # Versions of KT labels; log_index is NULL while the version waits to be logged.
            """CREATE TABLE kt_versions (
                label {blob} NOT NULL,
                version {int} NOT NULL,
                value {blob} NOT NULL,
                opening {blob} NOT NULL,
                search_key {blob} NOT NULL UNIQUE,
                commitment {blob} NOT NULL,
                log_index {int},
                PRIMARY KEY (label, version)
            )""",
            "CREATE INDEX kt_versions_by_entry ON kt_versions (log_index, search_key)",
            """CREATE TABLE kt_log (
                idx {int} PRIMARY KEY,
                timestamp_ms {int} NOT NULL,
                prefix_root {blob} NOT NULL,
                checkpoint {blob} NOT NULL
            )""",
            """CREATE TABLE kt_cosignatures (
                size {int} NOT NULL,
                witness TEXT NOT NULL,
                signature_line TEXT NOT NULL,
                cosigned_at {int} NOT NULL,
                PRIMARY KEY (size, witness)
            )""",
        ),
    ),
    (
        3,
        "message franking, abuse reports, blocks",
        (
            # The server's frank of an application message, fanned out with it.
            "ALTER TABLE payloads ADD COLUMN frank {blob}",
            # The server's sequence number of franked messages in each group.
            "ALTER TABLE group_epochs ADD COLUMN next_seq {int} NOT NULL DEFAULT 1",
            """CREATE TABLE franking_signer (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                signing_key {blob} NOT NULL
            )""",
            """CREATE TABLE franking_keys (
                key_id {int} PRIMARY KEY,
                hmac_key {blob} NOT NULL,
                created_at_ms {int} NOT NULL,
                retired_at_ms {int}
            )""",
            """CREATE TABLE reports (
                report_id {serial} PRIMARY KEY,
                reporter_username TEXT NOT NULL,
                reporter_device_id TEXT NOT NULL,
                sender_username TEXT NOT NULL,
                sender_device_id TEXT NOT NULL,
                group_id {blob} NOT NULL,
                server_seq {int} NOT NULL,
                reason TEXT NOT NULL,
                report {blob} NOT NULL,
                attachments TEXT NOT NULL,
                created_at {int} NOT NULL
            )""",
            """CREATE TABLE blocks (
                blocker TEXT NOT NULL REFERENCES accounts (username),
                blocked TEXT NOT NULL,
                created_at {int} NOT NULL,
                PRIMARY KEY (blocker, blocked)
            )""",
            "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
        ),
    ),
    (
        4,
        "validated groups: public MLS state, latest GroupInfo, member devices",
        (
            # `doorless.server.groups`: the public state (PublicGroup.to_bytes) of each
            # registered group and the latest GroupInfo its committer signed.
            """CREATE TABLE group_states (
                group_id {blob} PRIMARY KEY,
                epoch {int} NOT NULL,
                state {blob} NOT NULL,
                group_info {blob} NOT NULL
            )""",
            # The devices of the group's leaves: who may post to it (one lookup per message).
            """CREATE TABLE group_members (
                group_id {blob} NOT NULL,
                device_id TEXT NOT NULL,
                PRIMARY KEY (group_id, device_id)
            )""",
        ),
    ),
    (
        5,
        "key packages by cipher suite (post-quantum and classic packages of one device)",
        (
            # Rows from before are suite 1, the only suite clients published then.
            "ALTER TABLE key_packages ADD COLUMN cipher_suite INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX key_packages_by_suite "
            "ON key_packages (device_id, cipher_suite, last_resort, id)",
        ),
    ),
    (
        6,
        "the send transaction as one PostgreSQL function (one round trip per send)",
        # SQLite runs its transactions in process: nothing to install there.
        (Only("postgres", DELIVER_FUNCTION),),
    ),
    (
        7,
        "the ack transaction as one PostgreSQL function (one round trip per batch of acks)",
        (Only("postgres", ACK_FUNCTION),),
    ),
    (
        8,
        "the send function also returns the seqs it queued (a push without a read)",
        # A function's result type cannot be replaced in place.
        (
            Only("postgres", "DROP FUNCTION doorless_deliver"),
            Only("postgres", _returning_seqs(DELIVER_FUNCTION)),
        ),
    ),
    (
        9,
        "queue entries by payload on SQLite too",
        # Releasing a payload makes SQLite check that no queue entry still refers to it (the
        # foreign key): without this index a scan of the whole queue per payload, on the event
        # loop's thread (8.7 ms each behind a queue of 200,000 entries: devices offline).
        (Only("sqlite", "CREATE INDEX queue_by_payload ON queue (payload_id)"),),
    ),
)

SCHEMA_VERSION = _MIGRATIONS[-1][0]

# Where each store records the versions it applied (created before any migration runs).
MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, description TEXT NOT NULL)"
)


def render(dialect: Dialect) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """The migrations as ``(version, description, statements)`` in ``dialect``'s SQL."""
    types = TYPES[dialect]
    return tuple(
        (
            version,
            description,
            tuple(
                s.format(**types) if isinstance(s, str) else s.sql
                for s in statements
                if isinstance(s, str) or s.dialect == dialect
            ),
        )
        for version, description, statements in _MIGRATIONS
    )
