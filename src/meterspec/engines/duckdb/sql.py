"""DuckDB SQL for the plan's pieces: literals, conditions, the fast shapes of timestamps and
quantities, exact number formats and JSON strings exactly as msgspec writes them.

Every text that comes from a document goes into SQL through `literal` (quotes doubled,
control characters as chr()), never spliced raw. DuckDB's `//` and `%` truncate toward zero;
the macros below floor where MS-TIME-003 and the carries need it.
"""

from __future__ import annotations

import msgspec

from meterspec.engines.numbers import INT64_DIGITS, LIMB, LIMB_DIGITS, UNIT_DIGITS
from meterspec.engines.plan import Condition, condition_sql
from meterspec.engines.shapes import QUANTITY, TIMESTAMP, TIMESTAMP_MAX_LENGTH, UTC_TIMESTAMP
from meterspec.timestamps import MAX_INSTANT, MIN_INSTANT

_ENCODER = msgspec.json.Encoder()
_SHORT = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}


def big(number: int) -> str:
    """An integer literal computed in 128 bits (a bare literal past 64 bits may not be)."""
    return f"'{number}'::HUGEINT"


def literal(text: str) -> str:
    """A SQL string literal of `text`, whatever it holds."""
    parts: list[str] = []
    plain: list[str] = []
    for char in text:
        if ord(char) < 32:
            if plain:
                parts.append("'" + "".join(plain).replace("'", "''") + "'")
                plain = []
            parts.append(f"chr({ord(char)})")
        else:
            plain.append(char)
    if plain or not parts:
        parts.append("'" + "".join(plain).replace("'", "''") + "'")
    return parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")"


def json_literal(text: str) -> str:
    """A SQL literal of `text` as a JSON string (msgspec's encoding)."""
    return literal(_ENCODER.encode(text).decode())


def _escaped(expression: str) -> str:
    """msgspec's JSON string escapes: backslash, quote, \\b \\t \\n \\f \\r, other controls as
    \\u00xx."""
    out = f"replace(replace({expression}, '\\', '\\\\'), '\"', '\\\"')"
    for code in range(32):
        escape = _SHORT.get(code, f"\\u{code:04x}")
        out = f"replace({out}, chr({code}), '{escape}')"
    return out


MACROS = f"""
CREATE OR REPLACE TEMP MACRO ms_fmod(a, b) AS ((a % b) + b) % b;
CREATE OR REPLACE TEMP MACRO ms_fdiv(a, b) AS (a - ms_fmod(a, b)) // b;
CREATE OR REPLACE TEMP MACRO ms_zpad(a, n) AS repeat('0', greatest(n - length(a), 0)) || a;
CREATE OR REPLACE TEMP MACRO ms_fl(q) AS
    CASE WHEN strpos(q, '.') = 0 THEN 0 ELSE length(q) - strpos(q, '.') END;
CREATE OR REPLACE TEMP MACRO ms_il(q) AS
    CASE WHEN strpos(q, '.') = 0 THEN length(q) ELSE strpos(q, '.') - 1 END
    - CASE WHEN starts_with(q, '-') THEN 1 ELSE 0 END;
CREATE OR REPLACE TEMP MACRO ms_ip(q) AS ltrim(split_part(ltrim(q, '-'), '.', 1), '0');
CREATE OR REPLACE TEMP MACRO ms_fp(q) AS rtrim(split_part(ltrim(q, '-'), '.', 2), '0');
CREATE OR REPLACE TEMP MACRO ms_canonical(q) AS CASE WHEN ms_ip(q) = '' AND ms_fp(q) = ''
    THEN '0' ELSE CASE WHEN starts_with(q, '-') THEN '-' ELSE '' END
    || CASE WHEN ms_ip(q) = '' THEN '0' ELSE ms_ip(q) END
    || CASE WHEN ms_fp(q) = '' THEN '' ELSE '.' || ms_fp(q) END END;
CREATE OR REPLACE TEMP MACRO ms_decimal_text(x) AS CASE
    WHEN contains(x::VARCHAR, '.') THEN rtrim(rtrim(x::VARCHAR, '0'), '.') ELSE x::VARCHAR END;
CREATE OR REPLACE TEMP MACRO ms_enc(x) AS strlen(x)::VARCHAR || ':' || x;
CREATE OR REPLACE TEMP MACRO ms_js(x) AS CASE
    WHEN regexp_matches(x, '["\\\\\\x00-\\x1f]') THEN '"' || {_escaped("x")} || '"'
    ELSE '"' || x || '"' END;
CREATE OR REPLACE TEMP MACRO ms_digits(a, f) AS CASE WHEN f = 0 THEN a ELSE
    left(ms_zpad(a, f + 1), length(ms_zpad(a, f + 1)) - f)
    || CASE WHEN rtrim(right(ms_zpad(a, f + 1), f), '0') = '' THEN ''
            ELSE '.' || rtrim(right(ms_zpad(a, f + 1), f), '0') END END;
CREATE OR REPLACE TEMP MACRO ms_units_text(x, f) AS
    CASE WHEN x < 0 THEN '-' ELSE '' END || ms_digits(abs(x)::VARCHAR, f);
CREATE OR REPLACE TEMP MACRO ms_limbs_digits(h, m, l) AS
    ltrim(h::VARCHAR || ms_zpad(m::VARCHAR, {LIMB_DIGITS}) || ms_zpad(l::VARCHAR, {LIMB_DIGITS}),
          '0');
CREATE OR REPLACE TEMP MACRO ms_limbs_positive(h, m, l) AS ms_digits(
    CASE WHEN ms_limbs_digits(h, m, l) = '' THEN '0' ELSE ms_limbs_digits(h, m, l) END,
    {UNIT_DIGITS});
CREATE OR REPLACE TEMP MACRO ms_carry(h, m, l) AS struct_pack(
    h := h + ms_fdiv(m + ms_fdiv(l, {LIMB}), {LIMB}),
    m := ms_fmod(m + ms_fdiv(l, {LIMB}), {LIMB}),
    l := ms_fmod(l, {LIMB}));
CREATE OR REPLACE TEMP MACRO ms_limbs_text(c) AS CASE
    WHEN c.h >= 0 THEN ms_limbs_positive(c.h, c.m, c.l)
    ELSE '-' || ms_limbs_positive(ms_carry(-c.h, -c.m, -c.l).h, ms_carry(-c.h, -c.m, -c.l).m,
                                  ms_carry(-c.h, -c.m, -c.l).l) END;
CREATE OR REPLACE TEMP MACRO ms_timestamp_text(t) AS
    strftime(make_timestamp((ms_fdiv(t, 1000000000) * 1000000)::BIGINT),
             '%Y-%m-%dT%H:%M:%S')
    || CASE WHEN ms_fmod(t, 1000000000) = 0 THEN ''
            ELSE '.' || rtrim(ms_zpad(ms_fmod(t, 1000000000)::VARCHAR, 9), '0') END || 'Z';
"""
"""Macros every query of the backend may use, created once per connection:
ms_js(x) (a JSON string, as msgspec writes it), ms_enc(x) (MS-ID-001's field encoding),
ms_units_text(x, f) (the canonical text of x * 10**-f, MS-QTY-004), ms_limbs_text(ms_carry(
high, middle, low)) (the canonical text of summed limbs), ms_timestamp_text(t) (MS-TIME-004)."""


_UTC_IN_RANGE = (UTC_TIMESTAMP.replace("T[0-9]{2}:[0-9]{2}:[0-9]{2}",
                                      "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"))
"""shapes.UTC_TIMESTAMP with hours, minutes and seconds in range: one regex pass costs less
than comparing the fields after it."""
assert _UTC_IN_RANGE != UTC_TIMESTAMP


def timestamp_columns(text: str, prefix: str) -> list[list[str]]:
    """Layers of SELECT-list items (each layer may use the columns of the ones before: DuckDB
    repeats an alias's expression wherever one SELECT reuses it) reading a timestamp into
    `<prefix>_t` (HUGEINT nanoseconds, NULL unless a real instant of years 0001-9999,
    MS-TIME-001..003) and `<prefix>_ok`. Most timestamps are UTC, `Z`, at most nine fraction
    digits, years 1678-2261: those DuckDB's TIMESTAMP_NS reads, checked first against the
    strict shape (DuckDB's own parser also takes hour 24, offsets it ignores and a tenth
    digit it drops). The rest go through ms_instant, field by field."""
    p = prefix
    fast = (f"regexp_full_match({text}, '{_UTC_IN_RANGE}') AND substr({text}, 1, 4) "
            "BETWEEN '1678' AND '2261'")
    return [
        [f"CASE WHEN {fast} THEN epoch_ns(TRY_CAST({text} AS TIMESTAMP_NS))::HUGEINT END "
         f"AS {p}_f"],
        [f"CASE WHEN {p}_f IS NOT NULL THEN {p}_f ELSE ms_instant({text}) END AS {p}_t"],
        [f"{p}_t IS NOT NULL AS {p}_ok"],
    ]


def _instant_macro() -> str:
    """ms_instant(x): MS-TIME-001..003 in SQL for any timestamp of shapes.TIMESTAMP (offsets,
    lower-case t and z, zeros past the ninth digit, years 0001-9999), NULL for anything
    else; every cast runs only on text of the shape."""
    def number(start: str, length: int) -> str:
        return f"substr(x, {start}, {length})::BIGINT"

    z = "right(x, 1) IN ('Z', 'z')"
    sign = "CASE WHEN substr(x, length(x) - 5, 1) = '-' THEN -1 ELSE 1 END"
    offset = (f"CASE WHEN {z} THEN 0 ELSE {sign} * ({number('length(x) - 4', 2)} * 3600 + "
              f"{number('length(x) - 1', 2)} * 60) END")
    nanos = (f"CASE WHEN substr(x, 20, 1) = '.' THEN left(substr(x, 21, length(x) - 20 - "
             f"CASE WHEN {z} THEN 1 ELSE 6 END) || '000000000', 9)::BIGINT ELSE 0 END")
    fields_ok = (f"{number('1', 4)} >= 1 AND {number('12', 2)} <= 23 AND "
                 f"{number('15', 2)} <= 59 AND {number('18', 2)} <= 59 AND ({z} OR ("
                 f"{number('length(x) - 4', 2)} <= 23 AND {number('length(x) - 1', 2)} <= 59))")
    date = f"TRY(make_date({number('1', 4)}, {number('6', 2)}, {number('9', 2)}))"
    instant = (f"(({date} - DATE '1970-01-01') * 86400 + {number('12', 2)} * 3600 + "
               f"{number('15', 2)} * 60 + {number('18', 2)} - {offset})::HUGEINT * 1000000000 "
               f"+ {nanos}")
    return (
        "CREATE OR REPLACE TEMP MACRO ms_instant(x) AS CASE WHEN coalesce(length(x) <= "
        f"{TIMESTAMP_MAX_LENGTH} AND regexp_full_match(x, '{TIMESTAMP}'), false) THEN "
        f"CASE WHEN {fields_ok} THEN CASE WHEN {date} IS NOT NULL THEN CASE WHEN {instant} "
        f"BETWEEN {big(MIN_INSTANT)} AND {big(MAX_INSTANT)} THEN {instant} END END END END;")


def layered(source: str, layers: list[list[str]]) -> str:
    """`source` (a query) with each layer's columns added in turn."""
    for layer in layers:
        if layer:
            source = f"SELECT *, {', '.join(layer)} FROM ({source})"
    return source


def distinct(names: str) -> str:
    """True when a list has no repeats: pairwise for up to three (most property objects are
    that small, and hashing them costs more), list_distinct beyond."""
    pairs = {2: [(1, 2)], 3: [(1, 2), (1, 3), (2, 3)]}
    cases = " ".join(f"WHEN {size} THEN " + " AND ".join(
        f"{names}[{a}] <> {names}[{b}]" for a, b in pair) for size, pair in pairs.items())
    return (f"CASE len({names}) WHEN 0 THEN true WHEN 1 THEN true {cases} "
            f"ELSE len(list_distinct({names})) = len({names}) END")


def quantity_ok(text: str) -> str:
    """True for a quantity of the fast shape (shapes.QUANTITY: plain, at most 30 integer and
    20 fraction digits as written, which bounds the significant ones; RE2 counts them as
    cheaply as it matches shapes.PLAIN)."""
    return f"coalesce(regexp_full_match({text}, '{QUANTITY}'), false)"


def decimal(text: str, scale: int) -> str:
    """A fast-shape quantity as DECIMAL(18, scale): exact when its digits fit (Units)."""
    return f"CAST({text} AS DECIMAL({INT64_DIGITS}, {scale}))"


def hugeint_units(text: str, scale: int) -> str:
    """A fast-shape quantity times 10**scale as a HUGEINT, NULL when it does not fit."""
    return (f"TRY_CAST(replace({text}, '.', '') || repeat('0', {scale} - ms_fl({text})) "
            "AS HUGEINT)")


def quantity_parts(text: str, prefix: str) -> list[list[str]]:
    """Layers (see timestamp_columns) splitting a fast-shape quantity into `<prefix>_neg`
    (a non-zero negative), `<prefix>_ip` (integer digits without leading zeros) and
    `<prefix>_fp` (fraction digits without trailing zeros): its canonical form, in parts."""
    p = prefix
    return [
        [f"ltrim(split_part(ltrim({text}, '-'), '.', 1), '0') AS {p}_ip",
         f"rtrim(split_part(ltrim({text}, '-'), '.', 2), '0') AS {p}_fp"],
        [f"starts_with({text}, '-') AND ({p}_ip <> '' OR {p}_fp <> '') AS {p}_neg"],
    ]


def limbs(prefix: str) -> list[str]:
    """The three 17-digit limbs (high, middle, low) of the value in units of 10**-20."""
    p = prefix
    digits = f"ms_zpad({p}_ip || rpad({p}_fp, {UNIT_DIGITS}, '0'), {3 * LIMB_DIGITS})"
    sign = f"(CASE WHEN {p}_neg THEN -1 ELSE 1 END)"
    return [f"{sign} * substr({digits}, {1 + i * LIMB_DIGITS}, {LIMB_DIGITS})::BIGINT"
            for i in range(3)]


def condition(node: Condition, value: dict[str, str]) -> str:
    """A condition tree in this dialect (meterspec.engines.plan.condition_sql)."""
    return condition_sql(node, value, literal)


MACROS += _instant_macro()
