"""`sime-app --store PATH [--port N] [--host ADDR] [--token T]`: start the Streamlit curation app on a store.

The server listens on 127.0.0.1 only unless `--host` says otherwise (with a warning), can demand an
access token (`--token` / $SIME_APP_TOKEN), and neither it nor the page it serves contacts the internet.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
DEFAULT_HOST = "127.0.0.1"
ENV_TOKEN = "SIME_APP_TOKEN"  # same name as curation_app.auth.ENV_TOKEN (not imported: that needs streamlit)
#: Streamlit settings that keep the server and the browser from contacting anything but this server.
OFFLINE_OPTIONS = {
    "browser.gatherUsageStats": "false",  # no telemetry from the page
    "server.showEmailPrompt": "false",  # no first-run e-mail prompt (which would post the address)
    "client.toolbarMode": "viewer",  # no deploy button / links to streamlit.io
    "global.developmentMode": "false",
}


def build_command(store: str, port: int | None = None, host: str | None = DEFAULT_HOST,
                  headless: bool = False) -> list[str]:
    """The `streamlit run` command line that serves the app on `store` (loopback only unless `host` says so)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP)]
    for option, value in OFFLINE_OPTIONS.items():
        cmd += [f"--{option}", value]
    if port is not None:
        cmd += ["--server.port", str(port)]
    cmd += ["--server.address", host or DEFAULT_HOST]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd + ["--", "--store", store]


def is_loopback(host: str) -> bool:
    """True when `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int | None, has_token: bool) -> str | None:
    """The warning to print when the server is reachable from other machines, else None."""
    if is_loopback(host):
        return None
    where = f"{host}:{port or 8501}"
    if has_token:
        return (f"sime-app: warning: serving on {where}, reachable from other machines; sessions must enter the "
                "access token, and traffic is plain HTTP (use a TLS proxy or an SSH tunnel on untrusted networks)")
    return (f"sime-app: warning: serving on {where} WITHOUT an access token: anyone who can reach this machine can "
            f"read the store and create versions. Pass --token (or set ${ENV_TOKEN}), or use --host 127.0.0.1 "
            "with an SSH tunnel")


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
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 exposes the "
                             "app to the network, with a warning)")
    parser.add_argument("--token", default=os.environ.get(ENV_TOKEN),
                        help=f"access token every browser session must enter (default ${ENV_TOKEN}; prefer the "
                             "variable: a command line is visible to other users of the machine)")
    parser.add_argument("--sql-timeout", type=float, default=None, metavar="S",
                        help="stop SQL-box queries after S seconds (default 60; 0 = no limit)")
    parser.add_argument("--sql-max-rows", type=int, default=None, metavar="N",
                        help="refuse SQL-box results of more than N rows (default 100,000; 0 = no cap)")
    parser.add_argument("--headless", action="store_true", help="do not open a browser window")
    args = parser.parse_args(argv)
    if not args.store:
        parser.error("--store PATH is required (or set $SIME_STORE)")
    token = (args.token or "").strip()
    import sime_data

    try:
        sime_data.open_store(args.store)
    except sime_data.StoreError as exc:
        print(f"sime-app: {exc}", file=sys.stderr)
        return 2
    warning = exposure_warning(args.host, args.port, bool(token))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    env = dict(os.environ, SIME_STORE=args.store)
    env.pop(ENV_TOKEN, None)
    if token:
        env[ENV_TOKEN] = token  # passed in the environment, not on streamlit's command line
    if args.sql_timeout is not None:
        env["SIME_APP_SQL_TIMEOUT"] = str(args.sql_timeout)
    if args.sql_max_rows is not None:
        env["SIME_APP_SQL_MAX_ROWS"] = str(args.sql_max_rows)
    cmd = build_command(args.store, args.port, args.host, args.headless)
    if os.name == "posix":  # become the server process: signals (Ctrl-C, kill) reach streamlit directly
        os.execve(cmd[0], cmd, env)
    try:  # pragma: no cover - non-POSIX
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
