"""Exact numbers in fixed-width integers: which representation a backend uses for a job's
quantities, chosen from the digits the data actually has, and where 128-bit integers stop.

A quantity has at most 30 integer and 20 fraction digits (MS-QTY-002), 50 in all: more than
any 64- or 128-bit integer and than DuckDB's or Spark's DECIMAL (38 digits). Two forms cover
every input exactly:

- `Units(scale)`: the value times 10**scale as one signed 64-bit integer, when every quantity
  of the job fits (integer digits + scale <= 18). Sums accumulate in 128 bits, so they are
  exact for any count below 2**63 records (18 + 19 digits < 38). This is most data.
- `Limbs`: the value in units of 10**-20 cut into three signed 64-bit limbs of 17 digits
  (each < 10**17, all of the value's sign). Limbs sum separately in 128 bits (exact below
  ~10**21 records) and are carried back together at the end: any sum of spec-sized inputs.
  Compared limb by limb they order like the values (the rest of a limb never reaches the
  next limb's unit), so min, max and latest need no arithmetic.

A time-weighted integral is a level times nanoseconds: up to 10**50 x 3.2 * 10**20, beyond any
fixed width. `TwaBounds` says which groups a backend may integrate in 128-bit integers (their
largest level is at most `level_limit` units) and which it must hand to the exact fallback
(meterspec.engines.fallback).
"""

from __future__ import annotations

from dataclasses import dataclass

LIMB_DIGITS = 17
LIMB = 10**LIMB_DIGITS
UNIT_DIGITS = 20  # Limbs count units of 10**-20 (MS-QTY-002's finest digit)
INT64_DIGITS = 18  # every integer of up to 18 digits fits a signed 64-bit integer
INT128_BOUND = 10**38  # below 2**127 - 1 (~1.7 * 10**38): every 128-bit intermediate stays under


@dataclass(frozen=True)
class Digits:
    """The most significant integer digits and fraction digits (no leading or trailing
    zeros) among a job's quantities."""

    integer: int
    fraction: int


@dataclass(frozen=True)
class Units:
    """Each quantity as value * 10**scale in one signed 64-bit integer."""

    scale: int


@dataclass(frozen=True)
class Limbs:
    """Each quantity as three signed 64-bit limbs of 17 digits, in units of 10**-20."""


Representation = Units | Limbs


def representation(digits: Digits) -> Representation:
    """Units when every quantity fits 64 bits at the job's finest scale, else Limbs."""
    if digits.integer + digits.fraction <= INT64_DIGITS:
        return Units(digits.fraction)
    return Limbs()


def limbs_text(value: str) -> tuple[int, int, int]:
    """The limbs of a canonical quantity (for tests and fallbacks): high, middle, low."""
    negative = value.startswith("-")
    whole, _, fraction = value.lstrip("-").partition(".")
    units = int(whole + fraction.ljust(UNIT_DIGITS, "0"))
    high, rest = divmod(units, LIMB * LIMB)
    middle, low = divmod(rest, LIMB)
    sign = -1 if negative else 1
    return sign * high, sign * middle, sign * low


@dataclass(frozen=True)
class TwaBounds:
    """Where a 128-bit time-weighted integral is exact. Levels are in units of
    10**-fraction; a group may be integrated in 128 bits when its largest |level| is at most
    `level_limit` (None: no group may, every group takes the fallback)."""

    fraction: int
    level_limit: int | None


def twa_bounds(fraction: int, scale: int, range_length: int, longest: int) -> TwaBounds:
    """The 128-bit bounds of a time-weighted job: levels at 10**-fraction, results at
    `scale` digits (MS-AGG-015), windows within a range of `range_length` nanoseconds, the
    longest `longest` long.

    With A = area (level x ns), W = a window's length and T = the level limit:
    |A| <= T * range_length (every integral, prefix and partial sum); when scale >= fraction,
    the quotient floor(A / W) (|.| <= T) times 10**(scale - fraction) and the remainder (< W)
    times the same must stay below the bound; when scale < fraction, W * 10**(fraction -
    scale) is the divisor and must."""
    if scale >= fraction:
        factor = 10 ** (scale - fraction)
        if longest * factor > INT128_BOUND:
            return TwaBounds(fraction, None)
        limit = min(INT128_BOUND // range_length, INT128_BOUND // factor)
    else:
        if longest * 10 ** (fraction - scale) > INT128_BOUND:
            return TwaBounds(fraction, None)
        limit = INT128_BOUND // range_length
    return TwaBounds(fraction, limit if limit > 0 else None)
