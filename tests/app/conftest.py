"""Fixtures shared by the app tests (defined in app_testlib): real stores, the render worker, a Lift recording."""

from app_testlib import _template_store, app_store, lift_recording, render_service  # noqa: F401 (fixtures)
