"""Store maintenance: `verify` (read-only integrity check) and `gc` (reclaim what crashed writers left)."""

from __future__ import annotations

from .gc import TMP_MAX_AGE_SECONDS, GcReport, gc
from .layout import COMPACTION_LOCK
from .verify import VerifyReport, verify

__all__ = ["COMPACTION_LOCK", "TMP_MAX_AGE_SECONDS", "GcReport", "VerifyReport", "gc", "verify"]
