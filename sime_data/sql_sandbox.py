"""Read-only SQL for users: a statement filter and a throwaway, locked-down DuckDB per query.

Two walls keep a user's SQL from changing anything:

1. `check_read_only` lets through exactly one plain query (SELECT, VALUES, FROM-first, WITH ... SELECT,
   DESCRIBE/SUMMARIZE of a query) or an `EXPLAIN` of one. `EXPLAIN ANALYZE` runs the statement it explains,
   so it is refused, as is every other statement kind.
2. `run_read_only` runs the query on a fresh in-memory DuckDB that exists only for this query: the tables
   are registered into it, external access (files, network, extensions) is off, there is no temp/spill
   directory (DuckDB otherwise always allows `./.tmp/`), Python variables are not scanned, and the
   configuration is locked. Whatever a query could do to that database dies with it, so no query can
   change what another query (the store's own included) sees.

Each query also gets a timeout, a cap on result rows, and stops on Ctrl-C (KeyboardInterrupt), through
DuckDB's `interrupt()`, without holding any lock other readers need.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Mapping

import duckdb
import pandas as pd

from .errors import ReadOnlySQLError, SQLError, SQLResultTooLargeError, SQLTimeoutError

log = logging.getLogger(__name__)

#: Limits of `Store.sql` when the caller gives none (generous: programs, selection, reports).
API_TIMEOUT_S = 600.0
API_MAX_ROWS = 10_000_000
#: Limits of `sime-data sql` and of the app's SQL box (people typing queries).
INTERACTIVE_TIMEOUT_S = 60.0
INTERACTIVE_MAX_ROWS = 100_000

#: Settings of every query's database, applied before the configuration is locked.
_CONNECT_CONFIG = {
    "temp_directory": "",  # no spill files, and no always-allowed ./.tmp/ directory to read or write
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,  # `FROM some_python_variable` must not reach the caller's objects
}
#: How long to wait for DuckDB to give up a query after interrupting it.
_INTERRUPT_GRACE_S = 10.0


def check_read_only(query: str) -> str:
    """The single statement of `query` if it is a read-only query; SQLError / ReadOnlySQLError otherwise."""
    statements = _parse(query)
    if len(statements) > 1:
        raise ReadOnlySQLError(
            f"the catalog is read-only and runs one query at a time: found {len(statements)} statements "
            "separated by ';' (nothing was run)")
    statement = statements[0]
    kind = _statement_type(statement)
    if kind == duckdb.StatementType.SELECT:
        return statement.query
    if kind == duckdb.StatementType.EXPLAIN:
        explained = _explained_query(statement.query)
        if explained is not None:
            return statement.query
        raise ReadOnlySQLError(
            "the catalog is read-only: only `EXPLAIN <SELECT query>` is allowed; EXPLAIN ANALYZE (which runs the "
            f"statement), EXPLAIN options and EXPLAIN of other statements are refused (offending statement: "
            f"{_excerpt(statement.query)}; nothing was run)")
    label = "unknown" if kind is None else str(kind).rsplit(".", 1)[-1]
    raise ReadOnlySQLError(
        f"the catalog is read-only: {label} statements are refused, only SELECT queries run "
        f"(offending statement: {_excerpt(statement.query)}; nothing was run). Change data through the store API "
        "(writers, versions) instead.")


def _statement_type(statement: Any) -> Any:
    """The statement's DuckDB type, or None for a kind this duckdb build's Python API cannot name."""
    try:
        return statement.type
    except ValueError:
        return None


def _parse(query: str) -> list[Any]:
    if not isinstance(query, str) or not query.strip():
        raise SQLError("empty SQL query")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SQLError(f"SQL syntax error: {exc}") from exc
    except ValueError as exc:  # a statement kind this duckdb build cannot even name
        raise ReadOnlySQLError(f"the catalog is read-only: unsupported statement ({exc}); nothing was run") from exc
    if not statements:
        raise SQLError("empty SQL query")
    return statements


def _explained_query(text: str) -> str | None:
    """The query after a leading EXPLAIN if it is one plain SELECT (no ANALYZE, no options), else None."""
    try:
        tokens = [(pos, kind) for pos, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    except duckdb.Error:
        return None
    if len(tokens) < 2 or text[tokens[0][0]:tokens[1][0]].strip().upper() != "EXPLAIN":
        return None
    rest = text[tokens[1][0]:]
    try:
        inner = duckdb.extract_statements(rest)
    except (duckdb.Error, ValueError):
        return None
    if len(inner) != 1 or _statement_type(inner[0]) != duckdb.StatementType.SELECT:
        return None
    return rest


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 80 else text[:77] + "...")


def sandbox_connection(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB that cannot touch files, the network, extensions or its own settings."""
    con = duckdb.connect(":memory:", config={**_CONNECT_CONFIG, "threads": threads or _default_threads()})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_read_only(query: str, tables: Mapping[str, Any], *, timeout_s: float | None = API_TIMEOUT_S,
                  max_rows: int | None = API_MAX_ROWS) -> pd.DataFrame:
    """Check `query`, run it over `tables` (name -> Arrow table/dataset) in a fresh sandbox, return a DataFrame.

    Raises ReadOnlySQLError (refused, nothing ran), SQLError (DuckDB rejected it), SQLTimeoutError (ran longer
    than `timeout_s`), SQLResultTooLargeError (more than `max_rows` rows); Ctrl-C stops it and re-raises
    KeyboardInterrupt. Any other DuckDB failure comes back as `duckdb.Error` for the caller to classify.
    """
    statement = check_read_only(query)
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds or None, not {timeout_s!r}")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 0):
        raise ValueError(f"max_rows must be a non-negative int or None, not {max_rows!r}")
    con = sandbox_connection()
    try:
        _refuse_file_scans(con, statement, set(tables))
        for name, table in tables.items():
            con.register(name, table)
    except BaseException:
        con.close()
        raise
    job = _QueryJob(con, statement, max_rows)
    job.start()
    log.info("query running (time limit %s, row cap %s)", "none" if timeout_s is None else f"{timeout_s:g} s",
             "none" if max_rows is None else f"{max_rows:,}")
    job.wait(timeout_s)
    if isinstance(job.error, duckdb.PermissionException):
        raise ReadOnlySQLError(f"the catalog is read-only and queries cannot read or write files, URLs or "
                               f"extensions: {job.error}") from job.error
    if job.error is not None:
        raise job.error
    frame = job.frame
    assert frame is not None
    if max_rows is not None and len(frame) > max_rows:
        raise SQLResultTooLargeError(
            f"the query returns more than {max_rows:,} rows, the cap on result size; aggregate, filter or add a "
            "LIMIT, or raise the cap (`sime-data sql --max-result-rows N`, `store.sql(..., max_rows=N)`)")
    return frame


def _refuse_file_scans(con: duckdb.DuckDBPyConnection, statement: str, known: set[str]) -> None:
    """ReadOnlySQLError for `FROM '/some/file.csv'`-style table names (DuckDB would scan the file)."""
    explained = _explained_query(statement)
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [explained or statement]).fetchall()[0][0])
    except (duckdb.Error, TypeError, ValueError):  # not serialisable: the sandbox still refuses file access
        return
    for name in _base_table_names(tree):
        if name not in known and any(c in name for c in "/\\:."):
            raise ReadOnlySQLError(
                f"the catalog is read-only and queries cannot read files or URLs ({name!r}); query the views "
                f"{', '.join(sorted(known))} (nothing was run)")


def _base_table_names(node: Any) -> list[str]:
    """Names of all plain table references in a serialised DuckDB parse tree."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "BASE_TABLE" and isinstance(item.get("table_name"), str):
                found.append(item["table_name"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class _QueryJob:
    """One query running on its own thread, so the caller can time it out or stop it with Ctrl-C."""

    def __init__(self, con: duckdb.DuckDBPyConnection, statement: str, max_rows: int | None) -> None:
        self.con = con
        self.statement = statement
        self.max_rows = max_rows
        self.frame: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._closing = threading.Lock()  # interrupt() and close() never run at the same time
        self.thread = threading.Thread(target=self._run, name="sime-sql", daemon=True)

    def start(self) -> None:
        """Start the query."""
        self.thread.start()

    def _run(self) -> None:
        try:
            relation = self.con.sql(self.statement)
            if relation is None:  # pragma: no cover - only statements without a result, which the filter refuses
                self.frame = pd.DataFrame()
            else:
                if self.max_rows is not None:  # fetch one row more than allowed, to tell "exactly at" from "over"
                    relation = relation.limit(self.max_rows + 1)
                self.frame = relation.df()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            self.error = exc
        finally:
            try:
                with self._closing:
                    self.con.close()
            finally:
                self.done.set()

    def wait(self, timeout_s: float | None) -> None:
        """Wait for the result; interrupt the query on timeout (SQLTimeoutError) or Ctrl-C (KeyboardInterrupt)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not self.done.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))):
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop()
                    raise SQLTimeoutError(
                        f"the query ran longer than {timeout_s:g} s and was stopped; narrow it (WHERE, LIMIT, fewer "
                        "joins) or allow more time (`sime-data sql --timeout S`, `store.sql(..., timeout_s=S)`)")
        except KeyboardInterrupt:
            self._stop()
            raise

    def _stop(self) -> None:
        """Interrupt until DuckDB gives up (a query that had not started yet would miss a single interrupt)."""
        give_up = time.monotonic() + _INTERRUPT_GRACE_S
        while not self.done.is_set() and time.monotonic() < give_up:
            with self._closing:
                if self.done.is_set():
                    break
                try:
                    self.con.interrupt()
                except duckdb.Error:  # closed meanwhile: the query has ended
                    break
            self.done.wait(0.05)
