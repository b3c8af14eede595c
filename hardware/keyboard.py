"""Keyboard interface: operator events (start, finish, discard, quit, success, failure)."""

from __future__ import annotations

import abc
import enum
import threading
from collections import deque

from .device import Device


class KeyEvent(str, enum.Enum):
    """What the operator asked for."""

    START = "start"
    FINISH = "finish"
    DISCARD = "discard"
    QUIT = "quit"
    SUCCESS = "success"
    FAILURE = "failure"


#: Default key bindings (single characters); the rig config may replace them.
DEFAULT_KEYS: dict[str, KeyEvent] = {"s": KeyEvent.START, "f": KeyEvent.FINISH, "d": KeyEvent.DISCARD,
                                     "q": KeyEvent.QUIT, "y": KeyEvent.SUCCESS, "n": KeyEvent.FAILURE}


def parse_event(name: str | KeyEvent) -> KeyEvent:
    """KeyEvent of a name ('start', ...); ValueError listing the valid names otherwise."""
    if isinstance(name, KeyEvent):
        return name
    try:
        return KeyEvent(str(name).lower())
    except ValueError:
        raise ValueError(f"unknown key event {name!r}; use one of {[e.value for e in KeyEvent]}") from None


class Keyboard(Device, abc.ABC):
    """Queue of operator events; `poll()` returns (and forgets) the events since the last poll."""

    kind = "keyboard"

    def __init__(self, name: str = "keyboard") -> None:
        super().__init__(name)
        self._events: deque[KeyEvent] = deque()
        self._lock = threading.Lock()

    def push(self, event: KeyEvent) -> None:
        """Queue an event (backends call this, possibly from another thread)."""
        with self._lock:
            self._events.append(event)

    def poll(self) -> list[KeyEvent]:
        """Events since the last poll, oldest first."""
        self._check()
        self._tick()
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def new_episode(self) -> None:
        """Forget pending events before an episode starts (a scripted keyboard moves to its next script)."""
        with self._lock:
            self._events.clear()

    def _tick(self) -> None:
        """Hook run on every poll before the queue is read (scripted keyboards emit their events here)."""
