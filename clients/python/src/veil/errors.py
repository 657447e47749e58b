"""The contract's error codes as exceptions.

Every refusal the service sends is ``{"error": {"code", "message"}}``; the
client raises the exception named after its code, carrying the server's
message (which never echoes a protected value) and the HTTP status.
"""

from __future__ import annotations


class VeilError(Exception):
    """A refusal or failure from veil: ``code`` is the contract's stable code;
    ``retry_after`` the seconds until trying again can succeed, when the
    service says (rate limits, unavailability)."""

    code = "error"

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadRequest(VeilError):
    code = "bad_request"


class InvalidSql(VeilError):
    code = "invalid_sql"


class Unauthenticated(VeilError):
    code = "unauthenticated"


class Forbidden(VeilError):
    code = "forbidden"


class PolicyDenied(VeilError):
    code = "policy_denied"


class BudgetExhausted(VeilError):
    code = "budget_exhausted"


class NotFound(VeilError):
    code = "not_found"


class Conflict(VeilError):
    code = "conflict"


class PayloadTooLarge(VeilError):
    code = "payload_too_large"


class RateLimited(VeilError):
    """Too many requests: ``retry_after`` is the seconds until one can succeed."""

    code = "rate_limited"


class Internal(VeilError):
    code = "internal"


class Unavailable(VeilError):
    code = "unavailable"


BY_CODE: dict[str, type[VeilError]] = {
    cls.code: cls
    for cls in [
        BadRequest,
        InvalidSql,
        Unauthenticated,
        Forbidden,
        PolicyDenied,
        BudgetExhausted,
        NotFound,
        Conflict,
        PayloadTooLarge,
        RateLimited,
        Internal,
        Unavailable,
    ]
}


#: The class for a status when the body is not the contract's (a proxy's).
BY_STATUS: dict[int, type[VeilError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: Unavailable,
}


def _seconds(value: object) -> float | None:
    """A number of seconds, or None for anything else (an HTTP date)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def from_body(status: int, body: object, retry_after: str | None = None) -> VeilError:
    """The exception for an error answer: by the contract's code when the
    body is ``{"error": {"code", "message"}}``, else by the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    header = _seconds(retry_after)
    if not isinstance(error, dict):
        cls = BY_STATUS.get(status, Internal if status >= 500 else VeilError)
        return cls(f"HTTP {status} without the contract's error body", status, header)
    code = str(error.get("code", "error"))
    message = str(error.get("message", ""))
    cls = BY_CODE.get(code, VeilError)
    seconds = _seconds(error.get("retry_after_seconds"))
    exc = cls(message, status, seconds if seconds is not None else header)
    if cls is VeilError:
        exc.code = code
    return exc
