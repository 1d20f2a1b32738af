"""Store transaction methods: the account, its own devices, contacts and their devices."""

from __future__ import annotations

from collections.abc import Sequence

from doorless.client.store.base import TxBase
from doorless.client.store.rows import Account, Contact, ContactDevice, OwnDevice
from doorless.client.store.schema import contact_row, device_row
from doorless.errors import ConfigurationError
from doorless.secret import PrivateKeyBytes


class AccountRows(TxBase):
    """The account, this account's own devices, contacts and their devices."""

    __slots__ = ()

    def get_account(self) -> Account | None:
        row = self._one(
            "SELECT username, server_url, device_id, cipher_suite, signature_private_key, "
            "signature_public_key, credential, created_at FROM account WHERE id = 1"
        )
        if row is None:
            return None
        return Account(
            username=row[0],
            server_url=row[1],
            device_id=row[2],
            cipher_suite=row[3],
            signature_private_key=PrivateKeyBytes(row[4]),
            signature_public_key=row[5],
            credential=row[6],
            created_at=row[7],
        )

    def put_account(self, account: Account) -> None:
        self._x(
            "INSERT OR REPLACE INTO account (id, username, server_url, device_id, cipher_suite, "
            "signature_private_key, signature_public_key, credential, created_at) "
            "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account.username,
                account.server_url,
                account.device_id,
                account.cipher_suite,
                account.signature_private_key.value,
                account.signature_public_key,
                account.credential,
                account.created_at,
            ),
        )

    # own devices

    def put_device(self, device: OwnDevice) -> None:
        self._x(
            "INSERT OR REPLACE INTO devices (device_id, signature_public_key, name, status, "
            "first_seen_at) VALUES (?, ?, ?, ?, ?)",
            (
                device.device_id,
                device.signature_public_key,
                device.name,
                device.status.value,
                device.first_seen_at,
            ),
        )

    def get_device(self, device_id: str) -> OwnDevice | None:
        row = self._one(
            "SELECT device_id, signature_public_key, name, status, first_seen_at FROM devices "
            "WHERE device_id = ?",
            (device_id,),
        )
        return None if row is None else device_row(row)

    def list_devices(self) -> list[OwnDevice]:
        rows = self._all(
            "SELECT device_id, signature_public_key, name, status, first_seen_at FROM devices "
            "ORDER BY first_seen_at, device_id"
        )
        return [device_row(r) for r in rows]

    def delete_device(self, device_id: str) -> None:
        self._changed(
            self._x("DELETE FROM devices WHERE device_id = ?", (device_id,)), "the device"
        )

    # contacts

    def put_contact(self, contact: Contact) -> None:
        """Insert or update a contact (its device list is kept)."""
        self._x(
            "INSERT INTO contacts (username, display_name, verified, blocked, accepted, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name, "
            "verified = excluded.verified, blocked = excluded.blocked, "
            "accepted = excluded.accepted, updated_at = excluded.updated_at",
            (
                contact.username,
                contact.display_name,
                int(contact.verified),
                int(contact.blocked),
                int(contact.accepted),
                contact.created_at,
                contact.updated_at,
            ),
        )

    def get_contact(self, username: str) -> Contact | None:
        row = self._one(
            "SELECT username, display_name, verified, blocked, accepted, created_at, updated_at "
            "FROM contacts WHERE username = ?",
            (username,),
        )
        return None if row is None else contact_row(row)

    def list_contacts(self) -> list[Contact]:
        rows = self._all(
            "SELECT username, display_name, verified, blocked, accepted, created_at, updated_at "
            "FROM contacts ORDER BY username"
        )
        return [contact_row(r) for r in rows]

    def delete_contact(self, username: str) -> None:
        """Delete a contact and its device list."""
        self._changed(
            self._x("DELETE FROM contacts WHERE username = ?", (username,)), "the contact"
        )

    def replace_contact_devices(self, username: str, devices: Sequence[ContactDevice]) -> None:
        """Replace the contact's verified device list with a new snapshot."""
        if any(d.username != username for d in devices):
            raise ConfigurationError("every ContactDevice must belong to the contact")
        self._x("DELETE FROM contact_devices WHERE username = ?", (username,))
        for d in devices:
            self._x(
                "INSERT INTO contact_devices (username, device_id, signature_public_key, "
                "verified_at) VALUES (?, ?, ?, ?)",
                (d.username, d.device_id, d.signature_public_key, d.verified_at),
            )

    def list_contact_devices(self, username: str) -> list[ContactDevice]:
        rows = self._all(
            "SELECT username, device_id, signature_public_key, verified_at FROM contact_devices "
            "WHERE username = ? ORDER BY device_id",
            (username,),
        )
        return [
            ContactDevice(
                username=r[0], device_id=r[1], signature_public_key=r[2], verified_at=r[3]
            )
            for r in rows
        ]


__all__ = ["AccountRows"]
