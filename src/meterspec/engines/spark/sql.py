"""Spark SQL for the plan's pieces: literals, conditions, timestamps read into (seconds,
nanoseconds), the fast shape of quantities, exact number texts and JSON strings exactly as
msgspec writes them. Every expression here is a Spark SQL string for `expr`/`selectExpr`.

Spark runs with ANSI semantics (Spark 4's default): a failed cast raises, so text is cast
only after a regex has proved its shape, inside a CASE. Every text that comes from a
document goes into SQL through `literal` (backslashes and quotes escaped, control
characters as \\u escapes), never spliced raw. Instants are a pair (sec BIGINT, ns INT):
years 0001-9999 span more nanoseconds than a 64-bit integer holds, their seconds do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from meterspec.engines.numbers import LIMB_DIGITS, UNIT_DIGITS
from meterspec.engines.plan import Condition, condition_sql
from meterspec.engines.shapes import PLAIN, TIMESTAMP, TIMESTAMP_MAX_LENGTH
from meterspec.quantity import MAX_FRACTION_DIGITS, MAX_INTEGER_DIGITS
from meterspec.timestamps import MAX_INSTANT, MIN_INSTANT

_ENCODER = msgspec.json.Encoder()
_SHORT = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
NANOS = 1_000_000_000
STRING = r'[^"\\\x00-\x1f]*+'
"""A JSON string's content with nothing to unescape (Java regex, possessive)."""


def whole(pattern: str) -> str:
    """A regex literal matching a whole text (rlike finds; \\z is the very end)."""
    return literal("^" + pattern + "\\z")




def literal(text: str) -> str:
    """A Spark SQL string literal of `text`, whatever it holds."""
    out = []
    for char in text:
        if char in "\\'":
            out.append("\\" + char)
        elif ord(char) < 32:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


_NEEDS_ESCAPE = literal('["\\\\\\x00-\\x1f]')
_PLAIN = whole(PLAIN)
_TIMESTAMP = whole(TIMESTAMP)


def json_literal(text: str) -> str:
    """A SQL literal of `text` as a JSON string (msgspec's encoding)."""
    return literal(_ENCODER.encode(text).decode())


def strings(values: Sequence[str]) -> str:
    """An ARRAY<STRING> literal."""
    return "CAST(array(" + ", ".join(literal(v) for v in values) + ") AS ARRAY<STRING>)"


def js(expression: str) -> str:
    """A text as a JSON string, as msgspec writes it (backslash, quote, \\b \\t \\n \\f \\r,
    other controls as \\u00xx)."""
    escaped = f"replace(replace({expression}, '\\\\', '\\\\\\\\'), '\"', '\\\\\"')"
    for code in range(32):
        escape = _SHORT.get(code, f"\\u{code:04x}")
        escaped = f"replace({escaped}, {literal(chr(code))}, {literal(escape)})"
    return (f"CASE WHEN {expression} rlike {_NEEDS_ESCAPE} THEN "
            f"'\"' || {escaped} || '\"' ELSE '\"' || {expression} || '\"' END")


def enc(expression: str) -> str:
    """MS-ID-001's encoding of one field: its UTF-8 length, a colon, the text."""
    return f"(CAST(octet_length({expression}) AS STRING) || ':' || {expression})"


def sha_id(prefix: str, expression: str) -> str:
    """`prefix` and the first 32 hex digits of SHA-256 of a text (MS-ID-003)."""
    return f"({literal(prefix)} || left(sha2(CAST({expression} AS BINARY), 256), 32))"


def zpad(expression: str, width: int) -> str:
    return f"lpad({expression}, greatest({width}, length({expression})), '0')"


# ------------------------------------------------------------------ quantities (MS-QTY)

def integer_digits(q: str) -> str:
    """The integer digits as written (a fast-shape quantity)."""
    return (f"(CASE WHEN instr({q}, '.') = 0 THEN length({q}) ELSE instr({q}, '.') - 1 END "
            f"- CASE WHEN startswith({q}, '-') THEN 1 ELSE 0 END)")


def fraction_digits(q: str) -> str:
    return f"(CASE WHEN instr({q}, '.') = 0 THEN 0 ELSE length({q}) - instr({q}, '.') END)"


def quantity_ok(q: str) -> str:
    """True for a quantity of the fast shape (shapes.PLAIN within MS-QTY-002's digits)."""
    return (f"coalesce({q} rlike {_PLAIN} AND {integer_digits(q)} <= "
            f"{MAX_INTEGER_DIGITS} AND {fraction_digits(q)} <= {MAX_FRACTION_DIGITS}, false)")


def significant(q: str) -> tuple[str, str]:
    """(integer digits without leading zeros, fraction digits without trailing zeros)."""
    return (f"ltrim('0', split_part(ltrim('-', {q}), '.', 1))",
            f"rtrim('0', split_part(ltrim('-', {q}), '.', 2))")


def canonical(q: str) -> str:
    """The canonical text of a fast-shape quantity (MS-QTY-004)."""
    whole, fraction = significant(q)
    return (f"CASE WHEN {whole} = '' AND {fraction} = '' THEN '0' ELSE "
            f"CASE WHEN startswith({q}, '-') THEN '-' ELSE '' END || "
            f"CASE WHEN {whole} = '' THEN '0' ELSE {whole} END || "
            f"CASE WHEN {fraction} = '' THEN '' ELSE '.' || {fraction} END END")


def units(q: str, scale: int) -> str:
    """A fast-shape quantity as DECIMAL(38, scale): exact when its digits fit (Units)."""
    return f"CAST({q} AS DECIMAL(38, {scale}))"


def decimal_text(expression: str) -> str:
    """The canonical text of a DECIMAL (Spark writes decimals plainly, with the scale's
    trailing zeros)."""
    text = f"CAST({expression} AS STRING)"
    return (f"CASE WHEN instr({text}, '.') = 0 THEN {text} "
            f"ELSE rtrim('.', rtrim('0', {text})) END")


def limbs(q: str) -> list[str]:
    """The three 17-digit limbs (high, middle, low) of the value in units of 10**-20, each
    BIGINT with the value's sign."""
    whole, fraction = significant(q)
    digits = zpad(f"{whole} || rpad({fraction}, {UNIT_DIGITS}, '0')", 3 * LIMB_DIGITS)
    sign = (f"(CASE WHEN startswith({q}, '-') AND ({whole} <> '' OR {fraction} <> '') "
            "THEN -1 ELSE 1 END)")
    return [f"{sign} * CAST(substr({digits}, {1 + i * LIMB_DIGITS}, {LIMB_DIGITS}) AS BIGINT)"
            for i in range(3)]


def digits_text(digits: str, fraction: str) -> str:
    """A non-negative integer's digits (no sign) as the canonical text of digits *
    10**-fraction (`fraction` SQL: a column or a number)."""
    padded = f"lpad({digits}, greatest({fraction} + 1, length({digits})), '0')"
    rest = f"rtrim('0', right({padded}, {fraction}))"
    return (f"(left({padded}, length({padded}) - {fraction}) || "
            f"CASE WHEN {rest} = '' THEN '' ELSE '.' || {rest} END)")


# ------------------------------------------------------------------ timestamps (MS-TIME)

def _days(y: str, m: str, d: str) -> str:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    yy = f"({y} - CASE WHEN {m} <= 2 THEN 1 ELSE 0 END)"
    era = f"({yy} div 400)"
    yoe = f"({yy} - {era} * 400)"
    doy = f"((153 * ({m} + CASE WHEN {m} > 2 THEN -3 ELSE 9 END) + 2) div 5 + {d} - 1)"
    doe = f"({yoe} * 365 + {yoe} div 4 - {yoe} div 100 + {doy})"
    return f"({era} * 146097 + {doe} - 719468)"


def timestamp_columns(text: str, prefix: str) -> list[list[str]]:
    """Layers of select items (each may use the ones before) reading a timestamp into
    `<prefix>_sec` and `<prefix>_ns` (NULL unless a real instant of years 0001-9999,
    MS-TIME-001..003) and `<prefix>_ok`. Anything not of shapes.TIMESTAMP is not ok."""
    p, x = prefix, text
    shape = (f"coalesce(length({x}) <= {TIMESTAMP_MAX_LENGTH} AND {x} rlike "
             f"{_TIMESTAMP}, false)")

    def number(start: str, length: int) -> str:
        return f"CAST(substr({x}, {start}, {length}) AS INT)"

    z = f"right({x}, 1) IN ('Z', 'z')"
    first = [
        f"{shape} AS {p}_shape",
    ]
    fields = [
        f"CASE WHEN {p}_shape THEN {number('1', 4)} END AS {p}_y",
        f"CASE WHEN {p}_shape THEN {number('6', 2)} END AS {p}_mo",
        f"CASE WHEN {p}_shape THEN {number('9', 2)} END AS {p}_d",
        f"CASE WHEN {p}_shape THEN {number('12', 2)} * 3600 + {number('15', 2)} * 60 + "
        f"{number('18', 2)} END AS {p}_hms",
        f"CASE WHEN {p}_shape THEN {number('12', 2)} <= 23 AND {number('15', 2)} <= 59 AND "
        f"{number('18', 2)} <= 59 AND ({z} OR ({number(f'length({x}) - 4', 2)} <= 23 AND "
        f"{number(f'length({x}) - 1', 2)} <= 59)) END AS {p}_fields",
        f"CASE WHEN {p}_shape THEN CASE WHEN {z} THEN 0 ELSE (CASE WHEN substr({x}, "
        f"length({x}) - 5, 1) = '-' THEN -1 ELSE 1 END) * ({number(f'length({x}) - 4', 2)} "
        f"* 3600 + {number(f'length({x}) - 1', 2)} * 60) END END AS {p}_off",
        f"CASE WHEN {p}_shape THEN CASE WHEN substr({x}, 20, 1) = '.' THEN CAST(left(substr("
        f"{x}, 21, length({x}) - 20 - CASE WHEN {z} THEN 1 ELSE 6 END) || '000000000', 9) "
        f"AS INT) ELSE 0 END END AS {p}_ns",
    ]
    leap = f"(({p}_y % 4 = 0 AND {p}_y % 100 <> 0) OR {p}_y % 400 = 0)"
    month_days = (f"CASE WHEN {p}_mo = 2 THEN CASE WHEN {leap} THEN 29 ELSE 28 END "
                  f"WHEN {p}_mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END")
    valid = (f"coalesce({p}_fields AND {p}_y >= 1 AND {p}_mo BETWEEN 1 AND 12 AND "
             f"{p}_d BETWEEN 1 AND {month_days}, false)")
    low_sec, low_ns = divmod(MIN_INSTANT, NANOS)
    high_sec, high_ns = divmod(MAX_INSTANT, NANOS)
    seconds = [f"CASE WHEN {valid} THEN CAST({_days(f'{p}_y', f'{p}_mo', f'{p}_d')} AS BIGINT) "
               f"* 86400 + {p}_hms - {p}_off END AS {p}_raw"]
    bounded = (f"coalesce(({p}_raw > {low_sec} OR ({p}_raw = {low_sec} AND {p}_ns >= {low_ns}))"
               f" AND ({p}_raw < {high_sec} OR ({p}_raw = {high_sec} AND {p}_ns <= {high_ns})),"
               " false)")
    last = [f"{bounded} AS {p}_ok", f"CASE WHEN {bounded} THEN {p}_raw END AS {p}_sec"]
    return [first, fields, seconds, last]


def timestamp_text(sec: str, ns: str) -> str:
    """MS-TIME-004's text of an instant (a DATE for the day: no session time zone)."""
    day = f"pmod({sec}, 86400)"
    clock = " || ':' || ".join(
        f"lpad(CAST({part} AS STRING), 2, '0')"
        for part in (f"{day} div 3600", f"pmod({day}, 3600) div 60", f"pmod({day}, 60)"))
    return (f"CAST(date_from_unix_date(CAST(({sec} - {day}) div 86400 AS INT)) AS STRING) || "
            f"'T' || {clock} || CASE WHEN {ns} = 0 THEN '' ELSE '.' || "
            f"rtrim('0', lpad(CAST({ns} AS STRING), 9, '0')) END || 'Z'")


def at_or_after(sec: str, ns: str, instant: int) -> str:
    s, n = divmod(instant, NANOS)
    return f"({sec} > {s} OR ({sec} = {s} AND {ns} >= {n}))"


def before(sec: str, ns: str, instant: int) -> str:
    s, n = divmod(instant, NANOS)
    return f"({sec} < {s} OR ({sec} = {s} AND {ns} < {n}))"


# ------------------------------------------------------------------ conditions (MS-MET-005)

def condition(node: Condition, value: dict[str, str]) -> str:
    """A condition tree in this dialect (meterspec.engines.plan.condition_sql)."""
    return condition_sql(node, value, literal)
