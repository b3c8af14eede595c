"""Common base of every device: connect/close, context manager, clear errors when used unconnected."""

from __future__ import annotations

from typing import Any

from .errors import DeviceStateError


class Device:
    """A connectable device; subclasses implement `_connect` and `_close` (both called at most once per cycle)."""

    kind = "device"

    def __init__(self, name: str = "") -> None:
        self.name = name or self.kind
        self._connected = False

    @property
    def connected(self) -> bool:
        """True between a successful connect() and close()."""
        return self._connected

    def connect(self) -> Device:
        """Open the device (no-op when already open); returns self."""
        if not self._connected:
            self._connect()
            self._connected = True
        return self

    def close(self) -> None:
        """Release the device (safe to call twice)."""
        if self._connected:
            self._connected = False
            self._close()

    def _check(self) -> None:
        if not self._connected:
            raise DeviceStateError(f"{self.kind} {self.name!r} is not connected: call connect() or use it in a with block")

    def _connect(self) -> None:  # pragma: no cover - trivial default
        pass

    def _close(self) -> None:  # pragma: no cover - trivial default
        pass

    def __enter__(self) -> Any:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, connected={self._connected})"
