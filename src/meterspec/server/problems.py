"""RFC 9457 problem documents carrying meterspec problems (MS-HTTP-007): the one shape of
every refusal the server sends, whatever refused it."""

from __future__ import annotations

from http import HTTPStatus

import msgspec

from meterspec.errors import Problem

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://meterspec.dev/http/"


class ProblemDocument(msgspec.Struct):
    """schemas/openapi.json#/components/schemas/ProblemDocument."""

    type: str
    title: str
    status: int
    detail: str
    problems: list[Problem]


class HttpError(Exception):
    """A request refused as a whole: its status, its problems, extra headers (Retry-After)."""

    def __init__(self, status: int, problems: list[Problem],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(problems[0].message)
        self.status = status
        self.problems = problems
        self.headers = headers or {}

    @classmethod
    def single(cls, status: int, code: str, message: str, requirement: str, path: str = "",
               headers: dict[str, str] | None = None) -> HttpError:
        return cls(status, [Problem(code, path, message, requirement)], headers)

    def document(self) -> bytes:
        first = self.problems[0]
        return msgspec.json.encode(ProblemDocument(
            f"{TYPE_BASE}{first.code}", HTTPStatus(self.status).phrase, self.status,
            first.message, self.problems))
