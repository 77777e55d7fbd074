"""Webhook delivery of domain events (specs/events.md, MS-WH): Standard Webhooks signatures,
verification against replay, and the retry schedule that ends in a dead letter.

    sign(secrets, id, timestamp, body)    -> {webhook-id, webhook-timestamp, webhook-signature}
    verify(headers, body, secrets, now)   -> Verified(id, timestamp), or MeterspecError
    after_attempt(n, finished_at, status) -> delivered / retry at an instant / dead letter

Pure: no clock is read (the caller passes `now` and the instants of its attempts) and no random
number is drawn (the caller passes the jitter it drew), so two implementations sign, verify and
schedule alike to the nanosecond.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from meterspec.errors import MeterspecError, Problem, pointer
from meterspec.timestamps import NANOS_PER_SECOND, Instant

if TYPE_CHECKING:
    from meterspec.domain_events import DomainEvent

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "MAX_ATTEMPTS", "AttemptOutcome", "Verified",
           "after_attempt", "delivery", "nominal_delay", "secret_key", "sign", "signature",
           "verify"]

SECRET_PREFIX = "whsec_"
"""The prefix of a webhook secret's text (MS-WH-002)."""
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # Standard Webhooks: 192 to 512 bits
DEFAULT_TOLERANCE_SECONDS = 300
"""How far a delivery's timestamp may be from the verifier's clock by default (MS-WH-005)."""
MAX_TOLERANCE_SECONDS = 3600
"""The largest tolerance a verifier may set."""
MAX_TIMESTAMP = 253_402_300_799
"""9999-12-31T23:59:59Z in Unix seconds, the last second MS-TIME-001 allows."""
MAX_ATTEMPTS = 10
"""The most attempts of one delivery (MS-WH-007)."""
FIRST_DELAY_SECONDS, BACKOFF_FACTOR, MAX_DELAY_SECONDS = 60, 3, 86_400
MAX_JITTER_PERMILLE = 200
"""The retry delay's jitter bound: plus or minus 200 permille (MS-WH-007)."""
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
"""The headers of a delivery (MS-WH-001)."""
# webhook-id: visible ASCII without "." (the signed content is id.timestamp.body: an id with a
# dot could be re-split into another id, timestamp and body under the same signature).
_ID = re.compile(r"[!-\-/-~]+")
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?")


class Verified(msgspec.Struct, frozen=True):
    """A delivery whose signature and timestamp passed (MS-WH-005): the id to deduplicate on
    (MS-WH-006) and the timestamp of the attempt, in Unix seconds."""

    id: str
    """The `webhook-id` of the delivery: what the consumer deduplicates on (MS-WH-006)."""
    timestamp: int
    """The `webhook-timestamp` of the attempt, Unix seconds."""


class AttemptOutcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """What follows one delivery attempt (MS-WH-007, MS-WH-008): `delivered`, a `retry` at
    `next_attempt_at`, or `dead-letter` (with `endpoint_disabled` after a 410 Gone)."""

    state: Literal["delivered", "retry", "dead-letter"]
    """`delivered`, `retry` or `dead-letter` (MS-WH-007, MS-WH-008)."""
    next_attempt_at: Instant | None = None
    """For `retry`, when the next attempt starts, ns since the epoch; else None."""
    endpoint_disabled: bool = False
    """Whether the endpoint answered 410 Gone and is disabled until re-enabled."""


# ------------------------------------------------------------------ secrets and signatures

def secret_key(secret: object, path: str = "") -> bytes:
    """The HMAC key of a `whsec_` secret (MS-WH-002): the bytes of its base64 (standard
    alphabet, padding optional), 24 to 64 of them; `invalid-secret` otherwise."""
    if not isinstance(secret, str):
        raise MeterspecError.single("wrong-type", path, "a secret is a string", "MS-WH-002")
    encoded = secret.removeprefix(SECRET_PREFIX)
    key = None
    if secret.startswith(SECRET_PREFIX) and len(encoded) <= 4 * MAX_KEY_BYTES \
            and _BASE64.fullmatch(encoded):
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            key = None
    if key is None or not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise MeterspecError.single(
            "invalid-secret", path, f"a secret is {SECRET_PREFIX!r} followed by the base64 of "
            f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes", "MS-WH-002")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature (MS-WH-003): base64 of HMAC-SHA256 over id, '.', the timestamp in
    decimal, '.', and the body's bytes exactly as sent."""
    signed = b"%s.%d.%s" % (msg_id.encode("ascii"), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _id_problems(msg_id: object, path: str) -> list[Problem]:
    if not isinstance(msg_id, str):
        return [Problem("wrong-type", path, "a webhook id is a string", "MS-WH-001")]
    if not msg_id:
        return [Problem("empty-string", path, "a webhook id is not empty", "MS-WH-001")]
    if not _ID.fullmatch(msg_id):
        return [Problem("invalid-value", path, "a webhook id is visible ASCII without '.'",
                        "MS-WH-001")]
    return []


def _secrets(secrets: object, path: str, problems: list[Problem]) -> list[bytes]:
    if not isinstance(secrets, list | tuple):
        problems.append(Problem("wrong-type", path, "secrets are a list", "MS-WH-002"))
        return []
    if not secrets:
        problems.append(Problem("empty-list", path, "at least one secret", "MS-WH-002"))
    keys: list[bytes] = []
    for index, secret in enumerate(secrets):
        try:
            keys.append(secret_key(secret, f"{path}/{index}"))
        except MeterspecError as error:
            problems.extend(error.problems)
    return keys


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one delivery attempt (MS-WH-001 to MS-WH-003): one `v1,` signature
    per secret, in the order given (several while a secret is rotated, MS-WH-004). Raises
    MeterspecError with every problem of the inputs (paths /id, /timestamp, /secrets/i)."""
    problems = _id_problems(msg_id, "/id")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        problems.append(Problem("wrong-type", "/timestamp", "Unix seconds, an integer",
                                "MS-WH-001"))
    elif not 0 <= timestamp <= MAX_TIMESTAMP:
        problems.append(Problem("out-of-range", "/timestamp", f"0 to {MAX_TIMESTAMP} (years "
                                "1970 to 9999)", "MS-WH-001"))
    keys = _secrets(secrets, "/secrets", problems)
    if problems:
        raise MeterspecError(problems)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signature(key, msg_id, timestamp, body)
                                          for key in keys)}


def _offered(header: str) -> list[bytes]:
    """The `v1` signatures of a webhook-signature header, decoded; entries of other versions
    and entries that are not base64 of 32 bytes are skipped (they match nothing)."""
    found = []
    for entry in header.split(" "):
        version, comma, value = entry.partition(",")
        if version != "v1" or not comma or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", value):
            continue
        found.append(base64.b64decode(value))
    return found


def verify(headers: Mapping[str, object], body: bytes, secrets: Sequence[str], now: Instant,
           tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS) -> Verified:
    """Check one received delivery (MS-WH-005): every header present and well formed, the
    timestamp within `tolerance_seconds` of `now` either way, and some `v1` signature equal
    (in constant time) to the signature under some secret. Raises MeterspecError with every
    problem, paths /headers/<lower-case name> and /secrets/i."""
    problems: list[Problem] = []
    if isinstance(tolerance_seconds, bool) or not isinstance(tolerance_seconds, int) \
            or not 0 <= tolerance_seconds <= MAX_TOLERANCE_SECONDS:
        problems.append(Problem("out-of-range", "/toleranceSeconds", f"an integer from 0 to "
                                f"{MAX_TOLERANCE_SECONDS} seconds", "MS-WH-005"))
    tolerance = None if problems else tolerance_seconds * NANOS_PER_SECOND
    given: dict[str, object] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in given:
            problems.append(Problem("invalid-value", pointer("headers", name), f"{lower} is "
                                    "given twice (header names ignore case)", "MS-WH-005"))
        given[lower] = value
    found: dict[str, str] = {}
    for name in HEADERS:
        path = pointer("headers", name)
        value = given.get(name)
        if value is None:
            problems.append(Problem("missing-field", path, f"the {name} header is required",
                                    "MS-WH-005"))
        elif not isinstance(value, str):
            problems.append(Problem("wrong-type", path, "a header value is a string",
                                    "MS-WH-005"))
        else:
            found[name] = value
    msg_id = found.get("webhook-id")
    if msg_id is not None:
        wrong = _id_problems(msg_id, "/headers/webhook-id")
        problems += wrong
        msg_id = None if wrong else msg_id
    timestamp = None
    if "webhook-timestamp" in found:
        text = found["webhook-timestamp"]
        if not _TIMESTAMP.fullmatch(text) or int(text) > MAX_TIMESTAMP:
            problems.append(Problem("invalid-value", "/headers/webhook-timestamp", "Unix "
                                    "seconds: decimal digits without sign or leading zero, "
                                    f"at most {MAX_TIMESTAMP}", "MS-WH-005"))
        else:
            timestamp = int(text)
            if tolerance is not None and abs(timestamp * NANOS_PER_SECOND - now) > tolerance:
                problems.append(Problem(
                    "timestamp-outside-tolerance", "/headers/webhook-timestamp",
                    f"more than {tolerance_seconds} s from now: a replay, or a clock that is "
                    "off", "MS-WH-005"))
    keys = _secrets(secrets, "/secrets", problems)
    if msg_id is not None and timestamp is not None and keys and "webhook-signature" in found:
        offered = _offered(found["webhook-signature"])
        expected = [base64.b64decode(signature(key, msg_id, timestamp, body)[3:])
                    for key in keys]
        # Every pair is compared, in constant time each, so the time taken does not tell
        # which secret or which entry came close.
        matched = False
        for candidate in offered:
            for wanted in expected:
                matched |= hmac.compare_digest(candidate, wanted)
        if not matched:
            problems.append(Problem("invalid-signature", "/headers/webhook-signature",
                                    "no v1 signature matches the id, timestamp and body under "
                                    "any secret", "MS-WH-005"))
    if problems:
        raise MeterspecError(problems)
    assert msg_id is not None and timestamp is not None
    return Verified(msg_id, timestamp)


def delivery(event: DomainEvent, source: str, secrets: Sequence[str],
             timestamp: int) -> tuple[dict[str, str], bytes]:
    """The headers and body of one delivery attempt of a domain event (MS-WH-001): the body
    is its CloudEvent (MS-CE-002) in the reference's encoding, the same bytes on every attempt;
    only `timestamp` (this attempt's, Unix seconds) and so the signatures change."""
    from meterspec.cloudevents import to_cloudevent
    from meterspec.codec import encode

    body = encode(to_cloudevent(event, source))
    headers = sign(secrets, event.id, timestamp, body)
    return {"content-type": "application/cloudevents+json", **headers}, body


# ------------------------------------------------------------------ retries (MS-WH-007, 008)

def nominal_delay(attempt: int) -> int:
    """Seconds from the end of failed attempt `attempt` (1-based) to the next, before jitter:
    60 s times 3 to the power attempt - 1, at most one day (MS-WH-007)."""
    if not 1 <= attempt < MAX_ATTEMPTS:
        raise ValueError(f"attempt {attempt} has no next attempt (1 to {MAX_ATTEMPTS - 1})")
    return min(FIRST_DELAY_SECONDS * int(BACKOFF_FACTOR ** (attempt - 1)), MAX_DELAY_SECONDS)


def after_attempt(attempt: int, finished_at: Instant, status: int | None, *,
                  jitter_permille: int = 0, retry_after: int | None = None) -> AttemptOutcome:
    """What follows delivery attempt `attempt` (1 to MAX_ATTEMPTS) that ended at `finished_at`
    with HTTP `status` (None: no response, a timeout, a refused connection). 2xx: delivered.
    410: dead letter, and the endpoint disabled. Otherwise a retry after the nominal delay
    scaled by (1000 + jitter_permille) / 1000, jitter from -200 to 200 drawn by the caller,
    and never sooner than a `retry_after` (seconds) the receiver asked for, up to a day; after
    the last attempt, a dead letter (MS-WH-007, MS-WH-008)."""
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise ValueError(f"attempts are numbered 1 to {MAX_ATTEMPTS}")
    if not -MAX_JITTER_PERMILLE <= jitter_permille <= MAX_JITTER_PERMILLE:
        raise ValueError(f"jitter is -{MAX_JITTER_PERMILLE} to {MAX_JITTER_PERMILLE} permille")
    if status is not None and 200 <= status <= 299:
        return AttemptOutcome("delivered")
    if status == 410:
        return AttemptOutcome("dead-letter", endpoint_disabled=True)
    if attempt == MAX_ATTEMPTS:
        return AttemptOutcome("dead-letter")
    delay = nominal_delay(attempt) * (1000 + jitter_permille) * (NANOS_PER_SECOND // 1000)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_DELAY_SECONDS) * NANOS_PER_SECOND)
    return AttemptOutcome("retry", next_attempt_at=finished_at + delay)
