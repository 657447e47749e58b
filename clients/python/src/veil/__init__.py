"""veil from Python.

>>> import veil
>>> client = veil.connect("http://127.0.0.1:8080", key)      # or VEIL_URL / VEIL_KEY
>>> answer = client.sql("SELECT county_code, COUNT(*) AS n FROM population GROUP BY county_code")
>>> answer.df                    # a polars DataFrame, streamed as Arrow
>>> answer.provenance, answer.privacy, answer.receipt

Refusals raise the exception named after the contract's code
(:class:`PolicyDenied`, :class:`BudgetExhausted`, :class:`RateLimited`, ...).
"""

from .client import Answer, Client, connect, verify_receipt
from .errors import (
    BadRequest,
    BudgetExhausted,
    Conflict,
    Forbidden,
    Internal,
    InvalidSql,
    NotFound,
    PayloadTooLarge,
    PolicyDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
    VeilError,
)

__all__ = [
    "Answer", "Client", "connect", "verify_receipt", "VeilError", "BadRequest", "BudgetExhausted",
    "Conflict", "Forbidden", "Internal", "InvalidSql", "NotFound", "PayloadTooLarge", "PolicyDenied",
    "RateLimited", "Unauthenticated", "Unavailable",
]
