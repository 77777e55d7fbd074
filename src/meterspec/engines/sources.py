"""Where an engine's rows come from, and the column layout of typed inputs.

Rows are numbered from 1 across all the inputs of a job, in order: an NDJSON file's line
numbers are the reference's (meterspec.lines: blank lines count, a byte-order mark does not),
the next input's continue after them, as if the files were concatenated; a Parquet input's
rows are numbered in the order of their files' paths, then of the rows in each file; a
table's in its storage order (DuckDB's rowid). Problems name these numbers as `line`.

Typed inputs (Parquet files, a DuckDB table) hold one event or record per row in the layout
of its JSON contract, member for member, every text a VARCHAR (quantities and timestamps
stay the strings the contract defines, so nothing is parsed before the rules check it):

| events | type |
|---|---|
| id, workspaceID, universeID, type, subject, time | VARCHAR |
| properties | MAP(VARCHAR, VARCHAR), NULL for none |

| records | type |
|---|---|
| id, workspaceID, universeID, subject, recordedAt, sourceEventID | VARCHAR |
| measurement | STRUCT(quantity VARCHAR, unit VARCHAR) |
| dimensions | MAP(VARCHAR, VARCHAR) |
| meteredAt | VARCHAR, NULL when absent (the column itself may be left out) |

A NULL member is an absent one (so a NULL `id` is `missing-field`), a NULL map value is JSON
null (`wrong-type`). Readings written as Parquet use the same rule (meterspec.engines.
duckdb.output).
"""

from __future__ import annotations

from dataclasses import dataclass

EVENT_COLUMNS: dict[str, str] = {
    "id": "VARCHAR", "workspaceID": "VARCHAR", "universeID": "VARCHAR", "type": "VARCHAR",
    "subject": "VARCHAR", "time": "VARCHAR", "properties": "MAP(VARCHAR, VARCHAR)"}
RECORD_COLUMNS: dict[str, str] = {
    "id": "VARCHAR", "workspaceID": "VARCHAR", "universeID": "VARCHAR", "subject": "VARCHAR",
    "recordedAt": "VARCHAR", "measurement": "STRUCT(quantity VARCHAR, unit VARCHAR)",
    "dimensions": "MAP(VARCHAR, VARCHAR)", "sourceEventID": "VARCHAR", "meteredAt": "VARCHAR"}
OPTIONAL_COLUMNS = frozenset({"properties", "meteredAt"})


@dataclass(frozen=True)
class NdjsonFile:
    """An NDJSON file of events or records, as `meterspec run` and `aggregate` read."""

    path: str


@dataclass(frozen=True)
class ParquetFiles:
    """A Parquet file, a directory of them (every *.parquet below it) or a glob."""

    path: str


@dataclass(frozen=True)
class Table:
    """A table in the typed layout: of the DuckDB engine's connection, or of the Spark
    engine's session (a table or a temporary view: a DataFrame after
    createOrReplaceTempView)."""

    name: str


@dataclass(frozen=True)
class Documents:
    """JSON texts held in memory, one document each (a text may span lines): line i is
    the i-th text."""

    texts: tuple[bytes, ...]


Source = NdjsonFile | ParquetFiles | Table | Documents


def source_for(path: str) -> Source:
    """A command-line input: Parquet for a directory or a name ending in .parquet, else
    NDJSON."""
    import os

    if os.path.isdir(path) or path.endswith(".parquet"):
        return ParquetFiles(path)
    return NdjsonFile(path)
