"""Import a vendor library on first use, turning a missing package into BackendUnavailableError."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import BackendUnavailableError


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def require(module: str, install_hint: str) -> Any:
    """Import `module` or raise BackendUnavailableError saying how to install (or why it cannot load)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(f"the {module!r} library is not installed ({_one_line(exc)}); "
                                      f"{install_hint}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. pynput raising ImportError without an X display
        raise BackendUnavailableError(f"the {module!r} library cannot be loaded here: {_one_line(exc)}; "
                                      f"{install_hint}") from None
