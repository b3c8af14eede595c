"""`sime-app --store PATH [--port N]`: start the Streamlit curation app on a store."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def build_command(store: str, port: int | None = None, host: str | None = None, headless: bool = False) -> list[str]:
    """The `streamlit run` command line that serves the app on `store`."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer"]
    if port is not None:
        cmd += ["--server.port", str(port)]
    if host is not None:
        cmd += ["--server.address", host]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd + ["--", "--store", store]


def wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the app server at `url` answers its health check; RuntimeError if it exits or times out."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {server.returncode}" if server.poll() is not None else f"silent for {timeout:g} s"
            raise RuntimeError(f"the app server at {url} did not start ({state})")
        time.sleep(0.3)


def stop_server(server: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate an app server process, killing it if it does not exit within `timeout` seconds."""
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, check the store opens, then run streamlit in the foreground."""
    parser = argparse.ArgumentParser(prog="sime-app", description="SIME curation app (Streamlit) on a trajectory store")
    parser.add_argument("--store", "-s", default=os.environ.get("SIME_STORE"),
                        help="store location (default $SIME_STORE)")
    parser.add_argument("--port", type=int, default=None, help="port to serve on (default: streamlit's 8501)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default: streamlit's; use 127.0.0.1 for local only)")
    parser.add_argument("--headless", action="store_true", help="do not open a browser window")
    args = parser.parse_args(argv)
    if not args.store:
        parser.error("--store PATH is required (or set $SIME_STORE)")
    import sime_data

    try:
        sime_data.open_store(args.store)
    except sime_data.StoreError as exc:
        print(f"sime-app: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ, SIME_STORE=args.store)
    cmd = build_command(args.store, args.port, args.host, args.headless)
    if os.name == "posix":  # become the server process: signals (Ctrl-C, kill) reach streamlit directly
        os.execve(cmd[0], cmd, env)
    try:  # pragma: no cover - non-POSIX
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
