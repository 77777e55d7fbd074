"""What the server keeps beside the event log, in the store's own database: API keys (only the
SHA-256 of their secrets, MS-HTTP-010) and meters (MeteringConfigs per tenant, MS-HTTP-005),
and the effective events of one tenant (MS-HTTP-011). No web framework here: `meterspec keys
create` uses it too.

A key reads `msk_<key id>_<secret>`: the id (12 hex digits) finds the row, the secret (32
random bytes, URL-safe base64) is compared by its hash in constant time. A secret of 256
random bits needs no slow hash: nobody guesses it, and the hash alone gives nothing back.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from hashlib import sha256
from typing import Literal, NamedTuple

from meterspec.store.base import Store, StoreError, _amended_line

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
PREFIX = "msk_"
TABLES = """
CREATE TABLE IF NOT EXISTS server_keys (key_id {TEXT} PRIMARY KEY, secret_hash {TEXT} NOT NULL,
    workspace_id {TEXT} NOT NULL, universe_id {TEXT} NOT NULL, scope {TEXT} NOT NULL,
    created_at {TEXT} NOT NULL);
CREATE TABLE IF NOT EXISTS server_meters (workspace_id {TEXT} NOT NULL,
    universe_id {TEXT} NOT NULL, id {TEXT} NOT NULL, config {TEXT} NOT NULL,
    PRIMARY KEY (workspace_id, universe_id, id))
"""


class Key(NamedTuple):
    """A key as the server knows it: never its secret."""

    key_id: str
    workspace_id: str
    universe_id: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        return self.scope == "admin" or self.scope == needed


def prepare(store: Store) -> None:
    """The store at the current schema version (created if empty) with the server's tables."""
    store.require_current(create=True)
    text = "VARCHAR" if store.dialect == "duckdb" else "text"
    for statement in TABLES.format(TEXT=text).split(";"):
        store.execute(statement)


def literal(text: str) -> str:
    """A SQL string literal (both dialects: standard strings, quotes doubled)."""
    if "\x00" in text:
        raise ValueError("no NUL character in a key's workspace, universe or meter id")
    return "'" + text.replace("'", "''") + "'"


def _hash(secret: str) -> str:
    return sha256(secret.encode()).hexdigest()


def create_key(store: Store, workspace: str, universe: str, scope: Scope) -> str:
    """A new key for (workspace, universe, scope): its text, shown once; only the hash of its
    secret is stored."""
    if scope not in SCOPES:
        raise ValueError(f"scope is one of {', '.join(SCOPES)}")
    if not workspace or not universe:
        raise ValueError("a key needs a non-empty workspace and universe")
    literal(workspace + universe)  # refuse NUL before anything is written
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    store.insert_rows("server_keys", ("key_id", "secret_hash", "workspace_id", "universe_id",
                                      "scope", "created_at"),
                      [(key_id, _hash(secret), workspace, universe, scope, store._now())])
    return f"{PREFIX}{key_id}_{secret}"


def find_key(store: Store, text: str) -> Key | None:
    """The key a bearer token names, None for a malformed or unknown one."""
    if not text.startswith(PREFIX) or text.count("_") < 2 or not text.isascii():
        return None
    key_id, _, secret = text[len(PREFIX):].partition("_")
    if len(key_id) != 12 or not all(c in "0123456789abcdef" for c in key_id):
        return None
    rows = store.query("SELECT secret_hash, workspace_id, universe_id, scope FROM server_keys "
                       f"WHERE key_id = {literal(key_id)}")
    if not rows or not hmac.compare_digest(str(rows[0][0]), _hash(secret)):
        return None
    scope = str(rows[0][3])
    if scope not in SCOPES:
        raise StoreError(f"key {key_id} has an unknown scope {scope!r}")
    return Key(key_id, str(rows[0][1]), str(rows[0][2]), scope)


def _tenant(key: Key) -> str:
    return (f"workspace_id = {literal(key.workspace_id)} AND "
            f"universe_id = {literal(key.universe_id)}")


def put_meter(store: Store, key: Key, meter_id: str, config: bytes) -> bool:
    """Store a meter's config (canonical JSON) in the key's tenant; True if it is new."""
    where = f"{_tenant(key)} AND id = {literal(meter_id)}"
    store._begin()
    try:
        existed = bool(store.query(f"SELECT 1 FROM server_meters WHERE {where}"))
        store.execute(f"DELETE FROM server_meters WHERE {where}")
        store.insert_rows("server_meters", ("workspace_id", "universe_id", "id", "config"),
                          [(key.workspace_id, key.universe_id, meter_id, config.decode())])
        store._commit()
    except BaseException:
        store._rollback()
        raise
    return not existed


def get_meter(store: Store, key: Key, meter_id: str) -> bytes | None:
    """A meter's config of the key's tenant, None if that tenant has none by this id."""
    rows = store.query(f"SELECT config FROM server_meters WHERE {_tenant(key)} "
                       f"AND id = {literal(meter_id)}")
    return str(rows[0][0]).encode() if rows else None


def _ident_literal(store: Store, text: str) -> str:
    if store.dialect == "postgres":  # identity columns are bytea there (UTF-8)
        return f"'\\x{text.encode().hex()}'::bytea"
    return literal(text)


def tenant_events(store: Store, key: Key) -> Iterator[bytes]:
    """The effective events (MS-ING-013) of the key's workspace and universe, one line each
    (without its line feed), in log order: amended ones with the amendment's properties."""
    workspace = _ident_literal(store, key.workspace_id)
    universe = _ident_literal(store, key.universe_id)
    for rows in store._stream(
            "SELECT payload, amended_properties FROM effective_events WHERE "
            f"workspace_id = {workspace} AND universe_id = {universe} ORDER BY seq"):
        for payload, amended in rows:
            line = str(payload) if amended is None else _amended_line(str(payload),
                                                                       str(amended))
            yield line.rstrip("\n").encode()
