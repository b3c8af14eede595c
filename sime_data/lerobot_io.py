"""LeRobot dataset interop in one import: `export_lerobot` (v3.0) and `import_lerobot` (v3.0, v2.1, v2.0).

The work is done in `lerobot_export`, `lerobot_import` and `lerobot_layout` (the format facts and where in
LeRobot's code they come from); this module only gathers their public names.
"""

from __future__ import annotations

from .lerobot_export import LeRobotExportResult, export_lerobot
from .lerobot_import import IMPORT_RULE_KIND, LeRobotImportResult, import_lerobot
from .lerobot_layout import CODEBASE_VERSION, VIDEO_ROUNDTRIP_MIN_PSNR_DB

__all__ = ["CODEBASE_VERSION", "IMPORT_RULE_KIND", "LeRobotExportResult", "LeRobotImportResult",
           "VIDEO_ROUNDTRIP_MIN_PSNR_DB", "export_lerobot", "import_lerobot"]
