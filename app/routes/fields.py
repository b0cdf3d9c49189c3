"""The bounded field types every request struct is made of, and the strict decoding that holds
JSON bodies to them.

ARCHITECTURE.md: no input a client can send yields a 500. A value PostgreSQL can't hold (a NUL
in text, an integer past its column, a time past year 9999 once in UTC) would otherwise fail
deep inside a transaction; these types refuse it where it enters, naming the field (400
``validation_error``). They bound what can be stored; business rules (a quantity of 1 to 99, a
deadline in the future) stay in the domain and keep their own 422 codes, so where a rule is
narrower than a type here, the type leaves the rule room to answer.

Litestar converts a JSON body to its struct leniently ("1" becomes 1, "true" becomes True), so
:func:`check_json_body` first decodes it strictly against the handler's struct. Being typed,
that decoding also stops at the first value of the wrong shape, so JSON nested 10,000 deep is a
400, not a ``RecursionError``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, ValidationException

from app.auth import MAX_DISPLAY_NAME
from app.errors import ApiError
from domain.errors import InvalidDeadline

END_OF_TEXT: Final = r"(?![\s\S])"
r"""Ends a pattern: Python's ``$`` also matches before a final newline (so ``"USD\n"`` would
pass ``^[A-Z]{3}$``), and ``\Z`` is not ECMAScript (patterns are published in the OpenAPI
document)."""

NO_CONTROL_CHARACTERS: Final = rf"^[^\x00-\x1f\x7f-\x9f]*{END_OF_TEXT}"
"""C0 controls (NUL, tab, newline…), DEL and C1 controls are refused anywhere in the text."""

MAX_MINOR: Final = 10**12
"""Any one amount, in minor units (10 billion dollars, 1 trillion yen). A line is at most the
price plus its options' deltas times 99, so the sums of a cart stay far inside BIGINT."""

MAX_COUNT: Final = 10**9
"""Stock and uses: inside PostgreSQL's INTEGER (2**31 - 1) with room to add back to."""

MAX_OPTION_GROUPS: Final = 20
MAX_OPTIONS_PER_GROUP: Final = 50
MAX_OPTIONS_CHOSEN: Final = MAX_OPTION_GROUPS * MAX_OPTIONS_PER_GROUP
"""A product's option groups and their options; an item chooses at most every option."""

BIGINT_MIN: Final = -(2**63)
BIGINT_MAX: Final = 2**63 - 1

MAX_DEADLINE_AHEAD: Final = timedelta(days=30)
"""How far ahead a cart's deadline may be: a group order closes within days, not years."""

Text = Annotated[str, msgspec.Meta(max_length=1000, pattern=NO_CONTROL_CHARACTERS)]
"""Free text on one line (an address line); whether it may be empty is the domain's call."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]
"""The name of a store, product, option group or option."""

DisplayName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_DISPLAY_NAME, pattern=NO_CONTROL_CHARACTERS)
]
"""What a member is called in the carts they join (carried in their token)."""

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)]
"""A code a client looks something up by (invite, coupon): unknown ones are the route's 404."""

CouponCode = Annotated[str, msgspec.Meta(pattern=rf"^[A-Za-z0-9_-]{{2,40}}{END_OF_TEXT}")]
"""The code a store's coupon is created with (stored upper-cased)."""

CurrencyCode = Annotated[str, msgspec.Meta(pattern=rf"^[A-Za-z]{{3}}{END_OF_TEXT}")]
"""An ISO 4217 code (whether the server knows it is the route's 422)."""

MinorAmount = Annotated[int, msgspec.Meta(ge=0, le=MAX_MINOR)]
"""An amount in minor units of the store's currency."""

WholeNumber = Annotated[int, msgspec.Meta(ge=BIGINT_MIN, le=BIGINT_MAX)]
"""Any integer a BIGINT holds, for a field whose range the domain or route checks with its own
422 (a tip: negative is ``invalid_tip``, above :data:`MAX_MINOR` a ``validation_error``)."""

Stock = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
"""Units of a product on hand."""

Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
"""How many of something, at least one (a quantity, a coupon's uses)."""

Deadline = Annotated[datetime, msgspec.Meta(tz=True)]
"""A time-zone-aware moment; RFC 3339 already limits the year to 9999. How far ahead it may
be is :func:`check_deadline`'s, that it is in the future the domain's."""


def invalid_field(field: str, message: str, *, source: str = "body") -> ApiError:
    """422 ``validation_error`` naming ``field``: a value of the right type the route refuses."""
    return ApiError(
        422,
        "validation_error",
        f"{field}: {message}",
        extra={"errors": [{"field": field, "source": source, "message": message}]},
    )


def check_deadline(deadline: datetime | None, now: datetime) -> None:
    """At most :data:`MAX_DEADLINE_AHEAD` ahead (422 ``invalid_deadline``, the domain's code for
    a deadline in the past): also keeps every time computed from it (the payment window,
    reminders) inside the years Python and PostgreSQL represent."""
    if deadline is not None and deadline - now > MAX_DEADLINE_AHEAD:
        raise InvalidDeadline(f"The deadline must be at most {MAX_DEADLINE_AHEAD.days} days ahead.")


# --- strict decoding of JSON bodies -----------------------------------------------------------

_ERROR_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>.+)`$")


def _error_field(exc: msgspec.ValidationError) -> tuple[str | None, str]:
    """msgspec's "Expected `int`, got `str` - at `$.items[0].quantity`" as the field
    ``items[0].quantity`` and the message; a missing or unknown field is named too."""
    match = _ERROR_AT.match(str(exc))
    message, path = (match["message"], match["path"] or "") if match else (str(exc), "")
    named = _NAMED_FIELD.match(message)
    if named:
        path = f"{path}.{named['name']}"
    return path.removeprefix(".") or None, message


def _body_struct(request: Request[Any, Any, Any]) -> type[msgspec.Struct] | None:
    data = request.route_handler.parsed_data_field
    annotation = data.annotation if data is not None else None
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


async def check_json_body(request: Request[Any, Any, Any]) -> None:
    """``before_request``: decode the JSON body strictly against the handler's struct.

    Refusals are the 400s Litestar's own validation gives (``validation_error`` naming the
    field, ``malformed_request`` for what is not JSON); an accepted body then goes through
    Litestar's usual decoding, which can only agree with this one. Registered app-wide in
    ``app.wiring``: a layer that sets its own ``before_request`` replaces it, so must call it."""
    struct = _body_struct(request)
    if struct is None:
        return
    body = await request.body()
    if not body:
        return  # a missing body is Litestar's to refuse
    try:
        msgspec.json.decode(body, type=struct, strict=True)
    except msgspec.ValidationError as exc:
        field, message = _error_field(exc)
        raise ValidationException(
            detail=message, extra=[{"key": field, "message": message, "source": "body"}]
        ) from exc
    except msgspec.DecodeError as exc:
        raise ClientException(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ClientException("the body is nested too deeply") from exc
