"""Store transaction methods: settings (small named values)."""

from __future__ import annotations

from doorless.client.store.base import TxBase


class SettingRows(TxBase):
    """Settings: small named values (the client's and the application's)."""

    __slots__ = ()

    def get_setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        self._x("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def delete_setting(self, key: str) -> None:
        self._x("DELETE FROM settings WHERE key = ?", (key,))


__all__ = ["SettingRows"]
