"""Webhook signatures, verification and retries (specs/events.md, MS-WH-001 to MS-WH-009).

The signatures are checked against the Standard Webhooks test vector and against HMAC computed
here with hashlib directly; the laws (a signed request verifies, any byte change breaks it,
rotation keeps both secrets valid) are hypothesis properties."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterspec import webhooks
from meterspec.contracts import Measurement, MeterRecord
from meterspec.domain_events import usage_recorded
from meterspec.errors import MeterspecError
from meterspec.webhooks import after_attempt, delivery, nominal_delay, secret_key, sign, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
BODY = b'{"test": 2432232314}'
STAMP = 1614265330
NS = 10**9


def _problems(call: object) -> set[tuple[str, str]]:
    with pytest.raises(MeterspecError) as raised:
        call()  # type: ignore[operator]
    return {(p.code, p.path) for p in raised.value.problems}


def _secret(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def test_the_standard_webhooks_test_vector() -> None:
    """MS-WH-003, MS-WH-009: the vector of the Standard Webhooks libraries, signed and
    verified through the reference API."""
    headers = sign([SECRET], MSG_ID, STAMP, BODY)
    assert headers == {"webhook-id": MSG_ID, "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    assert verify(headers, BODY, [SECRET], STAMP * NS) == webhooks.Verified(MSG_ID, STAMP)


def test_the_signature_is_hmac_over_id_timestamp_and_body() -> None:
    key = bytes(range(32))
    expected = base64.b64encode(hmac.new(key, b"dev_1.42.{}", hashlib.sha256).digest())
    assert webhooks.signature(key, "dev_1", 42, b"{}") == "v1," + expected.decode()


@pytest.mark.parametrize("secret", [
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix: a raw string is not taken as a key
    "whsec_", "whsec_" + "A" * 30,  # too short (22 bytes)
    "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
    "whsec_MfKQ9r8GKYqrTwjUPD8I*PZIo2LaLaSw",  # not base64 (decoders that skip it accept it)
    "whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw",
])
def test_secrets_are_whsec_and_24_to_64_bytes(secret: str) -> None:
    """MS-WH-002."""
    assert _problems(lambda: secret_key(secret, "/s")) == {("invalid-secret", "/s")}


def test_secrets_may_omit_padding() -> None:
    key = bytes(range(25))
    padded = _secret(key)
    assert padded.endswith("=")
    assert secret_key(padded) == secret_key(padded.rstrip("=")) == key


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=24, max_size=64),
       msg_id=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                    exclude_characters="."), min_size=1, max_size=40),
       timestamp=st.integers(0, webhooks.MAX_TIMESTAMP), body=st.binary(max_size=200),
       skew=st.integers(-300 * NS, 300 * NS))
def test_a_signed_request_verifies(key: bytes, msg_id: str, timestamp: int, body: bytes,
                                   skew: int) -> None:
    """Law: verify(sign(x)) holds whenever now is within the tolerance (MS-WH-005)."""
    headers = sign([_secret(key)], msg_id, timestamp, body)
    assert verify(headers, body, [_secret(key)], timestamp * NS + skew).id == msg_id


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=24, max_size=64), body=st.binary(min_size=1, max_size=200),
       data=st.data())
def test_any_byte_change_of_the_body_breaks_it(key: bytes, body: bytes,
                                               data: st.DataObject) -> None:
    """Law: a tampered body (one byte changed, added or removed) fails (MS-WH-003)."""
    headers = sign([_secret(key)], "dev_x", STAMP, body)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = [body[:index] + bytes([body[index] ^ flip]) + body[index + 1:],
               body + b" ", body[:-1]]
    for tampered in changed:
        assert _problems(lambda t=tampered: verify(headers, t, [_secret(key)], STAMP * NS)) == {
            ("invalid-signature", "/headers/webhook-signature")}


def test_id_and_timestamp_are_signed_too() -> None:
    headers = sign([SECRET], MSG_ID, STAMP, BODY)
    for name, value in (("webhook-id", "msg_other"), ("webhook-timestamp", str(STAMP + 1))):
        assert _problems(lambda n=name, v=value: verify({**headers, n: v}, BODY, [SECRET],
                                                        STAMP * NS)) == {
            ("invalid-signature", "/headers/webhook-signature")}


def test_a_dot_in_the_id_is_refused() -> None:
    """MS-WH-001: with a dot, id 'a', timestamp 1, body '2.x' signs like 'a.1', 2, 'x'."""
    key = bytes(32)
    assert webhooks.signature(key, "a", 1, b"2.x") == webhooks.signature(key, "a.1", 2, b"x")
    assert _problems(lambda: sign([_secret(key)], "a.1", 2, b"x")) == {("invalid-value", "/id")}
    headers = {"webhook-id": "a.1", "webhook-timestamp": "2",
               "webhook-signature": webhooks.signature(key, "a", 1, b"2.x")}
    assert _problems(lambda: verify(headers, b"x", [_secret(key)], 2 * NS)) == {
        ("invalid-value", "/headers/webhook-id")}


def test_the_tolerance_is_inclusive_and_symmetric() -> None:
    """MS-WH-005: exactly 300 s either way passes, one nanosecond more fails."""
    headers = sign([SECRET], MSG_ID, STAMP, BODY)
    for now in (STAMP * NS - 300 * NS, STAMP * NS + 300 * NS):
        verify(headers, BODY, [SECRET], now)
    for now in (STAMP * NS - 300 * NS - 1, STAMP * NS + 300 * NS + 1):
        assert _problems(lambda n=now: verify(headers, BODY, [SECRET], n)) == {
            ("timestamp-outside-tolerance", "/headers/webhook-timestamp")}
    assert verify(headers, BODY, [SECRET], STAMP * NS + 3600 * NS, tolerance_seconds=3600)
    assert _problems(lambda: verify(headers, BODY, [SECRET], STAMP * NS,
                                    tolerance_seconds=3601)) == {
        ("out-of-range", "/toleranceSeconds")}


@pytest.mark.parametrize("text", ["1e9", "+1614265330", "01614265330", "1614265330.5", "",
                                  " 1614265330", "-1", "253402300800", "١٦١٤٢٦٥٣٣٠"])
def test_timestamps_are_plain_decimal_seconds(text: str) -> None:
    headers = {**sign([SECRET], MSG_ID, STAMP, BODY), "webhook-timestamp": text}
    assert _problems(lambda: verify(headers, BODY, [SECRET], STAMP * NS)) == {
        ("invalid-value", "/headers/webhook-timestamp")}


def test_headers_are_case_insensitive_and_every_problem_is_reported() -> None:
    headers = sign([SECRET], MSG_ID, STAMP, BODY)
    upper = {name.title(): value for name, value in headers.items()}
    assert verify(upper, BODY, [SECRET], STAMP * NS).timestamp == STAMP
    assert _problems(lambda: verify({}, BODY, ["nope"], STAMP * NS)) == {
        ("missing-field", "/headers/webhook-id"), ("missing-field", "/headers/webhook-timestamp"),
        ("missing-field", "/headers/webhook-signature"), ("invalid-secret", "/secrets/0")}
    assert _problems(lambda: verify({**headers, "Webhook-Id": MSG_ID}, BODY, [SECRET],
                                    STAMP * NS)) == {("invalid-value", "/headers/Webhook-Id")}
    assert _problems(lambda: verify(headers, BODY, [], STAMP * NS)) == {
        ("empty-list", "/secrets")}


def test_rotation_signs_with_every_secret_and_any_one_verifies() -> None:
    """MS-WH-004: during a rotation both signatures travel; either secret alone verifies; a
    third does not; entries of other versions and garbage are skipped."""
    old, new, other = _secret(bytes(24)), _secret(bytes(range(1, 33))), _secret(bytes([7]) * 40)
    headers = sign([new, old], MSG_ID, STAMP, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for accepted in ([old], [new], [other, old]):
        verify(headers, BODY, accepted, STAMP * NS)
    assert _problems(lambda: verify(headers, BODY, [other], STAMP * NS)) == {
        ("invalid-signature", "/headers/webhook-signature")}
    mixed = {**headers, "webhook-signature": "v1a,AAAA v2,xyz v1,notbase64 "
             + sign([old], MSG_ID, STAMP, BODY)["webhook-signature"]}
    verify(mixed, BODY, [old], STAMP * NS)


def test_a_delivery_body_is_the_cloudevent_and_the_id_the_event_id() -> None:
    """MS-WH-001, MS-WH-006: every attempt sends the same bytes under the same id, the domain
    event's, which is what a consumer deduplicates on."""
    record = MeterRecord(id="rec_1", workspace_id="w", universe_id="u", subject="s",
                         recorded_at="2024-01-01T00:00:00Z",
                         measurement=Measurement("1", "calls"), dimensions={},
                         source_event_id="e1")
    event = usage_recorded(record)
    first, body = delivery(event, "/meterspec/eu-1", [SECRET], STAMP)
    second, again = delivery(event, "/meterspec/eu-1", [SECRET], STAMP + 60)
    assert body == again and first["webhook-id"] == second["webhook-id"] == event.id
    assert first["webhook-signature"] != second["webhook-signature"]
    assert first["content-type"] == "application/cloudevents+json"
    assert verify(second, body, [SECRET], (STAMP + 60) * NS).id == event.id


def test_the_retry_schedule() -> None:
    """MS-WH-007: 60 s times 3^(n-1), at most a day; ten attempts spanning 238,380 s."""
    assert [nominal_delay(n) for n in range(1, 10)] == [
        60, 180, 540, 1620, 4860, 14580, 43740, 86400, 86400]
    assert sum(nominal_delay(n) for n in range(1, 10)) == 238_380
    at = 1_000 * NS
    assert after_attempt(1, at, 500).next_attempt_at == at + 60 * NS
    assert after_attempt(1, at, None, jitter_permille=-200).next_attempt_at == at + 48 * NS
    assert after_attempt(3, at, 404, jitter_permille=200).next_attempt_at == at + 648 * NS
    assert after_attempt(2, at, 429, jitter_permille=1).next_attempt_at == at + 180_180_000_000
    # Retry-After lengthens, never shortens, and is capped at a day.
    assert after_attempt(1, at, 503, retry_after=120).next_attempt_at == at + 120 * NS
    assert after_attempt(2, at, 503, retry_after=5).next_attempt_at == at + 180 * NS
    assert after_attempt(1, at, 503, retry_after=10**9).next_attempt_at == at + 86400 * NS
    with pytest.raises(ValueError):
        after_attempt(1, at, 500, jitter_permille=201)
    with pytest.raises(ValueError):
        after_attempt(11, at, 500)


def test_delivered_dead_letter_and_gone() -> None:
    """MS-WH-008: 2xx delivers; the tenth failure dead-letters; 410 dead-letters and disables
    the endpoint at once; 3xx is a failure."""
    at = 5 * NS
    assert after_attempt(4, at, 204).state == "delivered"
    assert after_attempt(10, at, 200).state == "delivered"
    assert after_attempt(10, at, 500) == webhooks.AttemptOutcome("dead-letter")
    assert after_attempt(1, at, 410) == webhooks.AttemptOutcome("dead-letter",
                                                                endpoint_disabled=True)
    assert after_attempt(9, at, 301).state == "retry"


@settings(max_examples=100, deadline=None)
@given(attempt=st.integers(1, 9), jitter=st.integers(-200, 200), status=st.one_of(
    st.none(), st.integers(300, 599).filter(lambda s: s != 410)))
def test_every_retry_lies_within_the_jitter_bounds(attempt: int, jitter: int,
                                                   status: int | None) -> None:
    outcome = after_attempt(attempt, 0, status, jitter_permille=jitter)
    assert outcome.state == "retry" and outcome.next_attempt_at is not None
    nominal = nominal_delay(attempt) * NS
    assert nominal * 8 // 10 <= outcome.next_attempt_at <= nominal * 12 // 10
