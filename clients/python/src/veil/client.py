"""The veil client: one HTTP session, the contract's endpoints as methods.

SQL answers come as Arrow IPC streams and become polars DataFrames; the
other answers are small JSON documents, returned as DataFrames where they
are tables (the catalog, budgets, requests, the audit) and as dicts where
they are documents.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import httpx
import polars as pl
import pyarrow as pa
import pyarrow.ipc

from .errors import Internal, RateLimited, Unavailable, VeilError, from_body

ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: The most subjects one verification request carries.
VERIFY_BATCH = 10_000


def connect(url: str | None = None, key: str | None = None, timeout: float = 120.0) -> "Client":
    """A client for the service at ``url`` with the API key ``key``.

    Either may come from the environment: ``VEIL_URL`` (default
    ``http://127.0.0.1:8080``) and ``VEIL_KEY``.
    """
    url = url or os.environ.get("VEIL_URL", "http://127.0.0.1:8080")
    key = key or os.environ.get("VEIL_KEY")
    if not key:
        raise ValueError("no API key: pass key= or set VEIL_KEY")
    return Client(url, key, timeout)


@dataclass
class Answer:
    """A SQL answer: the rows and what the service says about them."""

    #: The rows, as a polars DataFrame.
    df: pl.DataFrame
    #: Where the data came from: datasets, providers, catalog versions, time.
    provenance: dict
    #: What privacy it spent: mode, ε and δ, the noise and its intervals.
    privacy: dict
    policy_version: str
    request_id: str
    #: The signed receipt (``veil1.…``), checkable offline; ``None`` when
    #: it could not be fetched (``receipt_error`` says why).
    receipt: str | None
    #: Whether the answer may have been cut at the policy's row cap: it has
    #: exactly that many rows (the stream carries no end-of-answer flag).
    truncated: bool
    receipt_error: Optional[str] = None
    _table: Optional[pa.Table] = field(repr=False, default=None)
    _sha256: str = field(repr=False, default="")

    def to_arrow(self) -> pa.Table:
        """The rows as an Arrow table (the stream's ``veil.*`` schema
        metadata is in ``provenance``, ``privacy`` and the rest)."""
        assert self._table is not None
        return self._table

    def verify_receipt(self, public_key: str) -> dict:
        """Checks the receipt with the service's public key (hex, as in
        ``DIR/public.key``) and that it is this answer's: its request id and
        the digest of the bytes received. Returns the receipt's claims;
        raises ``ValueError`` when any check fails."""
        if not self.receipt:
            raise ValueError(f"this answer has no receipt: {self.receipt_error or 'none was issued'}")
        claims = verify_receipt(self.receipt, public_key)
        if claims.get("request_id") != self.request_id:
            raise ValueError("the receipt is another request's")
        if not self._sha256 or claims.get("result_sha256") != self._sha256:
            raise ValueError("the receipt does not match the bytes received")
        return claims


def verify_receipt(receipt: str, public_key: str) -> dict:
    """The claims of ``receipt`` when its Ed25519 signature verifies with
    ``public_key`` (hex); raises ``ValueError`` otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    prefix = "veil1."
    if not receipt.startswith(prefix) or receipt.count(".") != 2:
        raise ValueError("not a veil receipt")
    payload, signature = receipt[len(prefix):].split(".")

    def decode(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key.strip()))
    try:
        key.verify(decode(signature), b"veil receipt v1." + payload.encode())
    except InvalidSignature:
        raise ValueError("the receipt's signature does not verify with this key") from None
    return json.loads(decode(payload))


class _Chunks(io.RawIOBase):
    """A response's chunks as a file, digested as they are read."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._rest = b""
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
            self.sha256.update(self._rest)
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


class Client:
    """A session with one veil service under one API key."""

    def __init__(self, url: str, key: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        # A little longer than the service's own limit on one request (120 s
        # by default), so that its refusal arrives before we give up.
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout + 10, connect=10),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------

    def _raise(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise from_body(response.status_code, body, response.headers.get("retry-after"))

    def _call(self, method: str, path: str, body: Any = None, params: Mapping | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TransportError as e:
            raise Unavailable(f"the service could not be reached ({type(e).__name__})") from e
        if response.status_code >= 400:
            self._raise(response)
        return response.json() if response.content else None

    # -- consumers and modelers ---------------------------------------------

    def sql(
        self,
        sql: str,
        purpose: str | None = None,
        epsilon: float | None = None,
        dry_run: bool = False,
        **options: Any,
    ) -> Answer | dict:
        """Runs one SELECT under the policy.

        With ``epsilon``, a differentially private answer charged to your
        budget (``options`` may bound each privacy unit's contribution:
        ``max_groups``, and ``max_rows`` per group, which is not a row limit
        of the answer; ``bounds="auto"`` estimates the clamping bounds under
        DP from a share of ε; ``intervals=True`` adds ``{column}_ci95_lo``
        and ``{column}_ci95_hi`` to each noisy column). With ``dry_run=True``, the price and the expected
        error as a dict, nothing spent. Otherwise an :class:`Answer`,
        streamed as Arrow IPC (no JSON is parsed for the rows).
        """
        body: dict[str, Any] = {"sql": sql}
        if purpose is not None:
            body["purpose"] = purpose
        if epsilon is not None:
            body["epsilon"] = epsilon
        body.update({k: v for k, v in options.items() if v is not None})
        if dry_run:
            body["dry_run"] = True
            return self._call("POST", "/v1/query", body)
        try:
            return self._stream_sql(body)
        except httpx.TransportError as e:
            raise Unavailable(f"the answer could not be read ({type(e).__name__})") from e

    def _stream_sql(self, body: dict) -> Answer:
        with self._http.stream(
            "POST", "/v1/query", json=body, headers={"Accept": ARROW_STREAM}
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._raise(response)
            chunks = _Chunks(response.iter_bytes())
            try:
                reader = pa.ipc.open_stream(io.BufferedReader(chunks, 1 << 16))
                table = reader.read_all()
                # Whatever follows the end-of-stream marker is still the answer's.
                while chunks.readinto(bytearray(1 << 16)):
                    pass
            except httpx.TimeoutException:
                raise
            except (httpx.HTTPError, pa.ArrowInvalid, OSError) as broken:
                # The service ends a stream that fails while running with an
                # error, having released nothing more.
                raise Internal(f"the answer broke off while streaming ({type(broken).__name__})") from broken
            digest = chunks.sha256.hexdigest()
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        request_id = meta.get("veil.request_id", response.headers.get("veil-request-id", ""))
        receipt, receipt_error = None, None
        if request_id:
            for _ in range(3):
                try:
                    receipt = self._call("GET", f"/v1/receipts/{request_id}")["receipt"]
                    break
                except RateLimited as e:
                    receipt_error = str(e)
                    time.sleep(min(e.retry_after or 1.0, 5.0))
                except VeilError as e:
                    receipt_error = str(e)
                    break
        max_rows = int(meta.get("veil.max_rows", "0") or 0)
        plain = table.replace_schema_metadata(None)
        return Answer(
            df=pl.from_arrow(plain),
            provenance=json.loads(meta.get("veil.provenance", "{}")),
            privacy=json.loads(meta.get("veil.privacy", "{}")),
            policy_version=meta.get("veil.policy_version", response.headers.get("veil-policy-version", "")),
            request_id=request_id,
            receipt=receipt,
            truncated=bool(max_rows) and plain.num_rows >= max_rows,
            receipt_error=None if receipt else receipt_error,
            _table=plain,
            _sha256=digest,
        )

    def verify(self, product: str, subject: str, claims: Mapping[str, Any], purpose: str | None = None) -> dict:
        """Verifies ``claims`` about one subject: the product's answer per
        claim (``match``/``mismatch``, or true/false), and nothing else."""
        body: dict[str, Any] = {"product": product, "subject": subject, "claims": dict(claims)}
        if purpose is not None:
            body["purpose"] = purpose
        return self._call("POST", "/v1/verify", body)

    def verify_batch(
        self,
        product: str,
        subjects: pl.DataFrame,
        subject: str = "subject",
        purpose: str | None = None,
        batch: int | None = None,
    ) -> pl.DataFrame:
        """Verifies a DataFrame of subjects: the column ``subject`` holds
        each one's identifier, every other column a claim. Returns the
        frame with one result column per answer (``<claim>_result``, or
        ``all_result`` for a product that answers all claims at once) and,
        when a limit withheld some, a ``withheld`` column with the reason's
        code.

        Sent in batches of ``batch`` subjects (at most 10,000 and the
        product's per-minute limit); a rate limit is waited out when it
        clears within a minute. Should a batch still be refused, the error
        carries the answers so far as ``partial`` (they count against the
        daily caps already).
        """
        if batch is None:
            limits = {p["name"]: p for p in self._call("GET", "/v1/verify/products").get("products", [])}
            per_minute = int((limits.get(product) or {}).get("per_minute") or VERIFY_BATCH)
            batch = max(1, min(VERIFY_BATCH, per_minute))
        claims = [c for c in subjects.columns if c != subject]
        results: list = []
        rows = subjects.to_dicts()
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            body: dict[str, Any] = {
                "product": product,
                "items": [
                    {"subject": str(r[subject]), "claims": {c: _claim(r[c]) for c in claims if r[c] is not None}}
                    for r in chunk
                ],
            }
            if purpose is not None:
                body["purpose"] = purpose
            while True:
                try:
                    answer = self._call("POST", "/v1/verify", body)
                    break
                except RateLimited as e:
                    if e.retry_after is not None and e.retry_after <= 60:
                        time.sleep(e.retry_after)
                        continue
                    e.partial = _verified(subjects.head(len(results)), results)  # type: ignore[attr-defined]
                    raise
                except VeilError as e:
                    e.partial = _verified(subjects.head(len(results)), results)  # type: ignore[attr-defined]
                    raise
            found = answer["results"]
            if len(found) != len(chunk):
                raise Internal(f"{len(found)} answers for {len(chunk)} subjects")
            results.extend(found)
        return _verified(subjects, results)

    def products(self) -> pl.DataFrame:
        """The verification products: what each verifies and whether you may."""
        answer = self._call("GET", "/v1/verify/products")
        return pl.DataFrame(_records(answer.get("products", []), ("claims",)))

    def budget(self, purpose: str | None = None) -> pl.DataFrame:
        """Per dataset: your budget, what you spent in its period, what is left."""
        params = {"purpose": purpose} if purpose else None
        answer = self._call("GET", "/v1/budget", params=params)
        return pl.DataFrame(
            [
                {
                    "dataset": b["dataset"],
                    "epsilon": b["budget"]["epsilon"],
                    "delta": b["budget"]["delta"],
                    "period": b.get("period"),
                    "renews": b.get("renews"),
                    "epsilon_spent": b["spent"]["epsilon"],
                    "epsilon_left": b["epsilon_left"],
                }
                for b in answer.get("budgets", [])
            ],
            schema={
                "dataset": pl.Utf8, "epsilon": pl.Float64, "delta": pl.Float64, "period": pl.Utf8,
                "renews": pl.Utf8, "epsilon_spent": pl.Float64, "epsilon_left": pl.Float64,
            },
        )

    def catalog(self, purpose: str | None = None) -> pl.DataFrame:
        """Every field of every dataset you may see, with your level for it."""
        params = {"purpose": purpose} if purpose else None
        answer = self._call("GET", "/v1/catalog", params=params)
        rows = []
        for d in answer.get("datasets", []):
            for f in d.get("fields", []):
                rows.append(
                    {
                        "dataset": d["name"],
                        "title": d.get("title"),
                        "provider": d.get("providing_institution"),
                        "share": d.get("share", {}).get("attribute"),
                        "open": d.get("open", {}).get("attribute"),
                        "field": f["name"],
                        "type": f.get("type", f.get("field_type")),
                        "category": f.get("category"),
                        "grade": f.get("grade"),
                        "level": f.get("level"),
                        "personal": f.get("personal"),
                        "sensitive": f.get("sensitive"),
                    }
                )
        text = pl.Utf8
        return pl.DataFrame(
            rows,
            schema={
                "dataset": text, "title": text, "provider": text, "share": text, "open": text,
                "field": text, "type": text, "category": text, "grade": text, "level": text,
                "personal": pl.Boolean, "sensitive": pl.Boolean,
            },
        )

    def open_request(self, kind: str, **body: Any) -> dict:
        """Opens one of the regulation's requests (``sharing``, ``open_data``,
        ``correction``, ...): ``dataset``, ``purpose``, ``fields``, ``days``,
        ``detail`` as the contract takes them."""
        return self._call("POST", "/v1/requests", {"kind": kind, **body})

    # -- modelers -------------------------------------------------------------

    def train(self, spec: Mapping[str, Any]) -> dict:
        """Trains a model inside under DP; the answer holds the released
        parameters, the privacy spent and the provenance, never rows."""
        return self._call("POST", "/v1/models", dict(spec))

    def models(self) -> pl.DataFrame:
        """Your models."""
        answer = self._call("GET", "/v1/models")
        return pl.DataFrame(
            [
                {
                    "id": m.get("id"),
                    "template": m.get("template"),
                    "epsilon_spent": (m.get("privacy") or {}).get("epsilon_spent"),
                    "policy_version": m.get("policy_version"),
                    "created_at": m.get("created_at"),
                }
                for m in answer.get("models", [])
            ],
            schema={
                "id": pl.Utf8, "template": pl.Utf8, "epsilon_spent": pl.Float64,
                "policy_version": pl.Utf8, "created_at": pl.Utf8,
            },
        )

    def model(self, model_id: str) -> dict:
        """One of your models."""
        return self._call("GET", f"/v1/models/{model_id}")

    def score(
        self,
        model_id: str,
        rows: pl.DataFrame | Sequence[Sequence[float]] | None = None,
        subjects: Iterable[str] | None = None,
        purpose: str | None = None,
    ) -> pl.Series:
        """Scores supplied feature rows (a DataFrame in the features' order)
        or named subjects (with a grant for ``purpose``) inside the service."""
        if (rows is None) == (subjects is None):
            raise ValueError("pass exactly one of rows= and subjects=")
        body: dict[str, Any] = {}
        if isinstance(rows, pl.DataFrame):
            # By name, in the model's order: a frame in another order would
            # score the wrong features.
            names = [f["field"] for f in self.model(model_id)["model"]["features"]]
            missing = [n for n in names if n not in rows.columns]
            if missing:
                raise ValueError(f"rows lack the model's features {missing} (it takes {names})")
            frame = rows.select(names)
            if frame.null_count().sum_horizontal()[0]:
                raise ValueError("rows hold nulls: every feature needs a value")
            body["rows"] = frame.to_numpy().tolist()
        elif rows is not None:
            body["rows"] = [list(r) for r in rows]
        else:
            body["subjects"] = list(subjects or [])
        if purpose is not None:
            body["purpose"] = purpose
        answer = self._call("POST", f"/v1/models/{model_id}/score", body)
        return pl.Series("score", answer["scores"], dtype=pl.Float64)

    # -- approvers ------------------------------------------------------------

    def requests(self) -> pl.DataFrame:
        """The requests you opened or act on, with deadlines and next steps."""
        answer = self._call("GET", "/v1/requests")
        return pl.DataFrame(
            [
                {
                    "id": r["id"],
                    "kind": r["kind"],
                    "state": r["state"],
                    "applicant": r["applicant"],
                    "dataset": r.get("dataset"),
                    "purpose": r.get("purpose"),
                    "due": r.get("due"),
                    "next_steps": ", ".join(f"{s['action']} ({s['by']})" for s in r.get("next_steps", [])),
                    "created_at": r.get("created_at"),
                }
                for r in answer.get("requests", [])
            ],
            schema={
                "id": pl.Utf8, "kind": pl.Utf8, "state": pl.Utf8, "applicant": pl.Utf8,
                "dataset": pl.Utf8, "purpose": pl.Utf8, "due": pl.Utf8, "next_steps": pl.Utf8,
                "created_at": pl.Utf8,
            },
        )

    def request(self, request_id: str) -> dict:
        """One request with its history."""
        return self._call("GET", f"/v1/requests/{request_id}")

    def act(self, request_id: str, action: str, **notes: str) -> dict:
        """Takes a step on a request; ``notes`` are what it records (a
        refusal's ``legal_basis``)."""
        body = {"notes": notes} if notes else None
        return self._call("POST", f"/v1/requests/{request_id}/{action}", body)

    def audit(self, limit: int = 100, **filters: Any) -> pl.DataFrame:
        """Audit entries, newest first: filter by ``principal``, ``dataset``,
        ``endpoint``, ``outcome``, ``since``, ``until``, ``before``."""
        params = {k: v for k, v in {"limit": limit, **filters}.items() if v is not None}
        answer = self._call("GET", "/v1/audit", params=params)
        entries = answer.get("entries", [])
        for e in entries:
            e["datasets"] = ", ".join(e.get("datasets") or [])
            e["fields"] = ", ".join(e.get("fields") or [])
            privacy = e.get("privacy")
            e["privacy"] = None if privacy is None else json.dumps(privacy, ensure_ascii=False)
        return pl.DataFrame(
            entries,
            schema={
                "seq": pl.Int64, "time": pl.Utf8, "principal": pl.Utf8, "role": pl.Utf8,
                "purpose": pl.Utf8, "endpoint": pl.Utf8, "request": pl.Utf8, "datasets": pl.Utf8,
                "fields": pl.Utf8, "rows": pl.Int64, "privacy": pl.Utf8, "outcome": pl.Utf8,
            },
        )

    def audit_verify(self) -> dict:
        """Whether the audit chain is intact."""
        return self._call("GET", "/v1/audit/verify")

    def policy(self) -> dict:
        """The active policy: version, label, name and text."""
        return self._call("GET", "/v1/policy")


def _claim(value: Any) -> Any:
    """A claim as JSON takes it: numbers and text as they are, the rest
    (dates, decimals) as text."""
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _verified(subjects: pl.DataFrame, results: list) -> pl.DataFrame:
    """The subjects with their answers beside them."""
    # A withheld item (a limit reached) answers its reason's code alone.
    withheld = [r if isinstance(r, str) else None for r in results]
    answers = [r if isinstance(r, dict) else {} for r in results]
    keys = sorted({k for r in answers for k in r})
    columns = {f"{k}_result": [_text(r.get(k)) for r in answers] for k in keys}
    if any(withheld):
        columns["withheld"] = withheld
    found = pl.DataFrame(columns, schema={k: pl.Utf8 for k in columns})
    return pl.concat([subjects, found], how="horizontal")


def _text(value: Any) -> str | None:
    """A verification answer as text: ``match``/``mismatch``, ``true``/``false``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _records(items: list, nested: tuple[str, ...]) -> list[dict]:
    """Flat records for a DataFrame: nested values as JSON text."""
    out = []
    for item in items:
        row = {}
        for k, v in item.items():
            row[k] = json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) or k in nested else v
        out.append(row)
    return out
