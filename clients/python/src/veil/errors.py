"""The contract's error codes as exceptions.

Every refusal the service sends is ``{"error": {"code", "message"}}``; the
client raises the exception named after its code, carrying the server's
message (which never echoes a protected value) and the HTTP status.
"""

from __future__ import annotations


class VeilError(Exception):
    """A refusal or failure from veil: ``code`` is the contract's stable code."""

    code = "error"

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status

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

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


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


def from_body(status: int, body: object, retry_after: str | None = None) -> VeilError:
    """The exception for an error answer (``body`` parsed JSON, or anything)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return VeilError(f"HTTP {status} without the contract's error body", status)
    code = str(error.get("code", "error"))
    message = str(error.get("message", ""))
    cls = BY_CODE.get(code, VeilError)
    if cls is RateLimited:
        seconds = error.get("retry_after_seconds", retry_after)
        return RateLimited(message, status, float(seconds) if seconds is not None else None)
    exc = cls(message, status)
    if cls is VeilError:
        exc.code = code
    return exc
