"""Hostile SQL that every entry point (store.sql, `sime-data sql`, the app's SQL box) must refuse.

Imported by the SQL security tests of the API, the CLI and the app. Each statement either changes the
catalog, its settings or files, or reads files/URLs; all must raise ReadOnlySQLError without running.
"""

from __future__ import annotations

from pathlib import Path

#: Rewrites `episodes` so every episode looks successful (the cross-session corruption of issue 12).
REDEFINE_EPISODES = "CREATE OR REPLACE VIEW episodes AS SELECT * REPLACE (true AS success) FROM episodes"

HOSTILE_SQL = [
    # EXPLAIN ANALYZE runs the statement it explains
    "EXPLAIN ANALYZE DROP VIEW episodes",
    f"EXPLAIN ANALYZE {REDEFINE_EPISODES}",
    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
    "EXPLAIN ANALYZE COPY episodes TO 'out.parquet'",
    "explain analyse select 1",
    "/* hidden */ EXPLAIN /* here */ ANALYZE DROP VIEW episodes",
    "EXPLAIN (ANALYZE) SELECT 1",
    "EXPLAIN DROP VIEW episodes",
    # catalog changes
    REDEFINE_EPISODES,
    "CREATE OR REPLACE TEMP VIEW episodes AS SELECT 1 AS x",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP TABLE t AS SELECT 1",
    "CREATE MACRO count_star() AS 99",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "DROP VIEW episodes",
    "DELETE FROM episodes",
    "INSERT INTO episodes (episode_id) VALUES ('x')",
    "UPDATE episodes SET success = true",
    "PIVOT episodes ON success",
    # files, databases, extensions
    "COPY episodes TO 'out.csv'",
    "COPY (SELECT 42 AS x) TO '.tmp/spill.csv'",
    "EXPORT DATABASE 'dump'",
    "ATTACH 'other.db' AS other",
    "ATTACH ':memory:' AS m",
    "DETACH m",
    "USE memory",
    "INSTALL httpfs",
    "LOAD httpfs",
    "UPDATE EXTENSIONS",
    # settings and other statements
    "SET enable_external_access = true",
    "SET temp_directory = '.'",
    "RESET lock_configuration",
    "SET VARIABLE x = 1",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "CHECKPOINT",
    "BEGIN TRANSACTION",
    "VACUUM",
    "PREPARE p AS SELECT 1",
    # several statements
    "SELECT 1; DROP VIEW episodes",
    "SELECT 1; SELECT 2",
    # reading files and URLs (table functions and `FROM 'path'` replacement scans)
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_parquet('meta/episodes/*/*.parquet')",
    "SELECT * FROM read_json_auto('sime_store.json')",
    "SELECT * FROM glob('*')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM \"/etc/passwd\"",
    "FROM 'sime_store.json'",
    "SELECT * FROM episodes JOIN 's3://bucket/rows.parquet' USING (episode_id)",
    "SELECT * FROM read_text('http://example.com/')",
    "WITH x AS (SELECT * FROM 'notes.csv') SELECT * FROM x",
    # DuckDB's always-allowed spill directory ./.tmp/
    "SELECT * FROM '.tmp/secret.csv'",
    "SELECT * FROM read_csv('.tmp/secret.csv')",
    "SELECT * FROM read_text('.tmp/secret.csv')",
    "SELECT * FROM glob('.tmp/*')",
]

#: A secret in ./.tmp/ that user SQL must not read.
SECRET_TEXT = "token\nhunter2\n"


def plant_tmp_secret(cwd: Path) -> Path:
    """Write ./.tmp/secret.csv under `cwd` (DuckDB allows its temp directory even without external access)."""
    tmp = cwd / ".tmp"
    tmp.mkdir(exist_ok=True)
    secret = tmp / "secret.csv"
    secret.write_text(SECRET_TEXT)
    return secret


def files_below(root: Path) -> list[str]:
    """Every file below `root` with its size, to show that nothing was written or changed."""
    return sorted(f"{p.relative_to(root)}:{p.stat().st_size}" for p in root.rglob("*") if p.is_file())
