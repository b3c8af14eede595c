"""Runs one store operation and SIGKILLs itself (or pauses) at a chosen point: fault injection for the
interrupted-migrate, interrupted-import and interrupted-export tests. Only this process is patched.

Usage: python _fault_worker.py POINT STORE [ARGS...]

    migrate-copy STORE N          kill -9 at the N-th file copied into the migration copy
    migrate-marked STORE          kill -9 after the copy is complete and marked, before the first rename
    migrate-between STORE         kill -9 between the two renames (the old store renamed away, the new one not in)
    migrate-pause STORE GATE      print PAUSED once the copy is complete, wait for file GATE, then finish
    import-demo STORE FILE K      kill -9 when the K-th demo (1-based) is read, mid-import
    import-commit STORE FILE      kill -9 right after the import's first row file was committed
    import-version STORE FILE     kill -9 when the import's first version is about to be written
    export-demo STORE VERSION OUT kill -9 after the first demo was written to the export's temp file
    export-pause STORE VERSION OUT GATE   print PAUSED after the first demo, wait for file GATE, then finish
Prints DONE when the operation finished normally.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def die() -> None:
    """kill -9 this process, now."""
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def wait_for(gate: str) -> None:
    """Announce the pause and wait until the gate file exists."""
    print("PAUSED", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    """Patch the chosen point, run the operation."""
    point, store = argv[0], argv[1]
    if point.startswith("migrate"):
        import shutil

        import migrations.runner as runner

        root = str(Path(store).absolute())
        if point == "migrate-copy":
            limit, calls = int(argv[2]), [0]
            real_copy = shutil.copy2

            def copy(src, dst, *a, **k):
                calls[0] += 1
                if calls[0] == limit:
                    die()
                return real_copy(src, dst, *a, **k)

            runner.shutil.copy2 = copy  # type: ignore[attr-defined]
        elif point in ("migrate-marked", "migrate-between"):
            real_rename = os.rename

            def rename(src, dst, *a, **k):
                if str(src) == root:
                    if point == "migrate-marked":
                        die()
                    real_rename(src, dst, *a, **k)
                    die()
                return real_rename(src, dst, *a, **k)

            runner.os.rename = rename  # type: ignore[attr-defined]
        elif point == "migrate-pause":
            real_record = runner._record
            gate = argv[2]

            def record(sfs, migration):
                real_record(sfs, migration)
                wait_for(gate)

            runner._record = record
        runner.migrate(store)
    elif point.startswith("import"):
        import sime_data
        import sime_data.robomimic_io as rio

        if point == "import-demo":
            limit, calls = int(argv[3]), [0]
            real_read = rio.read_demo

            def read(*a, **k):
                calls[0] += 1
                if calls[0] == limit:
                    die()
                return real_read(*a, **k)

            rio.read_demo = read
        elif point == "import-commit":
            import sime_data.writer as writer_module

            real_rows = writer_module.write_rows

            def write_rows(*a, **k):
                real_rows(*a, **k)
                die()

            writer_module.write_rows = write_rows
        else:
            def create_version(self, *a, **k):
                die()

            sime_data.Store.create_version = create_version  # type: ignore[method-assign]
        rio.import_robomimic(sime_data.open_store(store), argv[2], progress=False)
    elif point.startswith("export"):
        import sime_data
        import sime_data.robomimic_io as rio

        real_write = rio._write_demo
        calls = [0]

        def write(*a, **k):
            real_write(*a, **k)
            calls[0] += 1
            if calls[0] == 1:
                if point == "export-demo":
                    die()
                wait_for(argv[4])

        rio._write_demo = write
        rio.export_robomimic(sime_data.open_store(store), argv[2], argv[3], progress=False)
    else:
        raise SystemExit(f"unknown point {point!r}")
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
