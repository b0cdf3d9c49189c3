"""Every error the server answers with, as an RFC 9457 problem with a stable ``code``.

One place maps exceptions to responses:

- ``domain.errors.DomainError`` → 403 / 404 / 409 / 422 by its category, ``code`` from the class;
- ``app.failures.ApplicationError`` → a handler's refusal (unknown store, Stripe down, …), by
  its category, with its ``code``;
- :class:`ApiError` → a refusal decided at the HTTP edge (bad signature, malformed event);
- Litestar's HTTP exceptions → their status, with a code per status (validation errors name
  the offending field);
- what slipped past the request structs (:func:`unexpected_exception_handler`): a value
  PostgreSQL refuses to store → 422 ``invalid_value``; the database (or Redis) unreachable, a
  connection lost, the pool exhausted → 503 ``service_unavailable`` with ``Retry-After``;
  input nested too deep for the parser (``RecursionError``) → 400 ``malformed_request``;
- anything else → 500 ``internal_error``, logged with its traceback, never leaking details.

Clients branch on ``code``; ``type`` is a URI naming the same thing.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from app.failures import (
    ApplicationError,
    BelowOnlineMinimum,
    InvalidFieldError,
    causes,
    is_unavailable,
    is_unstorable_value,
)
from domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    IllegalTransition,
    Invalid,
    NotFound,
    OutOfStock,
    OverSpendingLimit,
    RefundExceedsPaid,
    TipTooHigh,
)

log = structlog.get_logger("teamcart.errors")

PROBLEM_TYPE_BASE = "/problems/"

_STATUS_BY_CATEGORY: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (Invalid, 422),
)

_CODE_BY_STATUS = MappingProxyType(
    {
        400: "malformed_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "unprocessable",
        429: "rate_limited",
        503: "service_unavailable",
    }
)

_TITLE_BY_STATUS = MappingProxyType(
    {
        400: "Bad request",
        402: "Payment required",
        401: "Authentication required",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        409: "Conflict",
        422: "Unprocessable request",
        429: "Too many requests",
        500: "Internal server error",
        502: "Bad gateway",
        503: "Service unavailable",
    }
)


class ApiError(ProblemDetailsException):
    """A refusal decided outside the domain, with a stable code."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            detail=detail,
            status_code=status_code,
            headers=headers,
            extra={"code": code, **(extra or {})},
            type_=PROBLEM_TYPE_BASE + code,
            title=_TITLE_BY_STATUS.get(status_code, "Error"),
        )
        self.code = code


def problem(
    status_code: int, code: str, detail: str, *, extra: dict[str, Any] | None = None
) -> ProblemDetailsException:
    """Build the problem exception Litestar renders as ``application/problem+json``."""
    return ApiError(status_code, code, detail, extra=extra)


def domain_error_to_problem(exc: DomainError) -> ProblemDetailsException:
    status = next((s for category, s in _STATUS_BY_CATEGORY if isinstance(exc, category)), 409)
    extra: dict[str, Any] = {}
    if exc.field is not None:
        extra["errors"] = [{"field": exc.field, "source": "body", "message": exc.detail}]
    if isinstance(exc, OutOfStock):
        extra["product_ids"] = list(exc.product_ids)
    if isinstance(exc, TipTooHigh):
        extra["max_tip_minor"] = exc.max_tip_minor
    if isinstance(exc, IllegalTransition):
        extra["allowed"] = list(exc.allowed)
    if isinstance(exc, RefundExceedsPaid):
        extra["refundable_minor"] = exc.refundable_minor
    if isinstance(exc, OverSpendingLimit):
        extra["limit_minor"] = exc.limit_minor
    return problem(status, exc.code, exc.detail, extra=extra)


def application_error_to_problem(exc: ApplicationError) -> ProblemDetailsException:
    extra: dict[str, Any] = {}
    if isinstance(exc, InvalidFieldError):
        extra["errors"] = [{"field": exc.field, "source": exc.source, "message": "invalid"}]
    if isinstance(exc, BelowOnlineMinimum):
        extra["minimum_minor"] = exc.minimum_minor
    return problem(exc.status, exc.code, exc.detail, extra=extra)


_TYPE_WORDS = MappingProxyType(
    {
        "int": "a whole number",
        "float": "a number",
        "str": "text",
        "bool": "true or false",
        "array": "a list",
        "object": "an object",
        "null": "empty (null)",
        "uuid": "an id (a UUID)",
        "datetime": "a date and time (RFC 3339)",
    }
)
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`)?(?P<rest>.*)$")
_BOUND = re.compile(r"^ (?:of length )?(?P<op>>=|<=|>|<) (?P<limit>-?\d+)$")
_LENGTH_WORDS = MappingProxyType(
    {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}
)


_PREFIX_WORDS = (
    ("Object missing required field", "is required"),
    ("Object contains unknown field", "is not a field this request takes"),
    ("Invalid UUID", "must be an id (a UUID)"),
    ("Invalid RFC3339", "must be a date and time (RFC 3339, with a time zone)"),
    ("Invalid enum value", "must be one of the allowed values"),
)
_UNITS = MappingProxyType({"str": "character", "array": "item", "object": "field"})


def _bound_words(want: str, rest: str) -> str | None:
    """ "Expected `int` >= 1" → "must be at least 1"; "`str` of length >= 1" → "must not be
    empty"; None for anything else."""
    bound = _BOUND.match(rest)
    if bound is None:
        return None
    op, limit = bound["op"], int(bound["limit"])
    unit = _UNITS.get(want)
    if unit is None:
        return f"must be {_LENGTH_WORDS[op]} {limit}"
    if op == ">=" and limit == 1:
        return "must not be empty"
    return f"must have {_LENGTH_WORDS[op]} {limit} {unit}{'' if limit == 1 else 's'}"


def human_message(message: str) -> str:
    """A validator's message (msgspec's or Litestar's) as the end of a sentence a person can
    read after the field's name: "Expected `int`, got `float`" → "must be a whole number";
    "Expected `str` of length >= 1" → "must not be empty". Unknown shapes pass through."""
    message = message.strip()
    for prefix, words in _PREFIX_WORDS:
        if message.startswith(prefix):
            return words
    match = _EXPECTED.match(message)
    if match is None:
        return message
    want, rest = match["want"], match["rest"]
    if match["got"] is not None:
        return f"must be {_TYPE_WORDS.get(want.split(' ')[0], want)}"
    if rest.startswith(" matching regex"):
        return "contains characters that aren't allowed here (or isn't in the expected format)"
    return _bound_words(want, rest) or message


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        key = error.get("key")
        message = human_message(str(error.get("message", "invalid value")))
        parts.append(f"{key} {message}" if key else message)
    return f"{'; '.join(parts)}." if parts else "The request is not valid."


def http_exception_to_problem(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ProblemDetailsException):
        return exc
    status = exc.status_code
    code = _CODE_BY_STATUS.get(status, "error" if status < 500 else "internal_error")
    extra: dict[str, Any] = {}
    detail = str(exc.detail)
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [dict(e) for e in exc.extra if isinstance(e, dict)]
        code = "validation_error" if errors else "malformed_request"
        extra["errors"] = [
            {
                "field": e.get("key"),
                "source": e.get("source"),
                "message": human_message(str(e.get("message", "invalid value"))),
            }
            for e in errors
        ]
        detail = _validation_detail(errors) if errors else detail
    elif isinstance(exc, ValidationException):
        code = "malformed_request"
    if status >= 500:
        detail = "the server failed to handle the request"
    headers = dict(exc.headers or {})
    if status == 429:  # the rate limiter says when its window resets
        headers.setdefault("Retry-After", headers.get("RateLimit-Reset", "60"))
        detail = "too many requests from this address; try again later"
    return ApiError(status, code, detail, headers=headers or None, extra=extra)


def slipped_through_to_problem(exc: BaseException) -> ApiError | None:
    """The 4xx or 503 for an exception no handler turned into a refusal, or None (a 500)."""
    for cause in causes(exc):
        if is_unstorable_value(cause):
            return ApiError(
                422,
                "invalid_value",
                "a value in the request can't be stored: out of range, too long or not text",
            )
        if is_unavailable(cause):
            return ApiError(
                503,
                "service_unavailable",
                "a service the server depends on is unavailable; retry shortly",
                headers={"Retry-After": "1"},
            )
        if isinstance(cause, RecursionError):
            return ApiError(400, "malformed_request", "the request is nested too deeply")
    return None


def unexpected_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    answer = slipped_through_to_problem(exc)
    if answer is not None:
        log.warning(
            "request_refused_late",
            path=request.url.path,
            method=request.method,
            code=answer.code,
            errors=[type(cause).__name__ for cause in causes(exc)],
        )
        return answer.to_response(request)
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "the server failed to handle the request"
    ).to_response(request)


def problem_details_config() -> ProblemDetailsConfig:
    """The plugin config: domain and HTTP exceptions rendered as problems."""
    return ProblemDetailsConfig(
        exception_to_problem_detail_map={
            DomainError: domain_error_to_problem,
            ApplicationError: application_error_to_problem,
            HTTPException: http_exception_to_problem,
        }
    )
