"""Tokens kept in this process only: lost on restart, never written anywhere."""

from __future__ import annotations

from authproxy.auth.grant import Grant


class MemoryStore:
    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}

    def load(self, key: str) -> Grant | None:
        return self._grants.get(key)

    def save(self, key: str, grant: Grant) -> None:
        self._grants[key] = grant

    def delete(self, key: str) -> None:
        self._grants.pop(key, None)

    async def close(self) -> None:
        return None
