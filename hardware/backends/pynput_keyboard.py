"""The operator's keyboard through `pynput` (needs a display: X11, or `xvfb-run`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..keyboard import DEFAULT_KEYS, Keyboard, KeyEvent
from ._lazy import require

INSTALL = "pip install -e '.[hardware]'; pynput needs an X display (run under xvfb-run on a headless machine)"


class PynputKeyboard(Keyboard):
    """Listens in a background thread; single-character keys map to events through `keys`."""

    def __init__(self, name: str = "keyboard", keys: Mapping[str, KeyEvent] | None = None) -> None:
        super().__init__(name)
        self.keys = dict(keys or DEFAULT_KEYS)
        self._listener: Any = None

    def _on_press(self, key: Any) -> None:
        char = getattr(key, "char", None)
        if char is not None and char.lower() in self.keys:
            self.push(self.keys[char.lower()])

    def _connect(self) -> None:
        module = require("pynput.keyboard", INSTALL)
        self._listener = module.Listener(on_press=self._on_press)
        self._listener.start()

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
