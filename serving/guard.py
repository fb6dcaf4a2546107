"""ASGI middleware in front of the scoring API: bearer token, content type, body size, JSON well-formedness.

BentoML answers a POST body that is not JSON with a 500 (pydantic's ``json_invalid`` surfaces as a
server error), and reads a body of any size. It also picks a parser by Content-Type (BentoML 1.4.40,
``_bentoml_impl.server.app``): ``multipart/form-data`` and ``application/x-www-form-urlencoded`` go
to a form parser, whose own 400 for a body that is not valid multipart becomes a 500 with a traceback,
and which answers a form without our fields (``curl -d '{...}'`` sends its JSON as a form key) with a
200 that scored the schema's example instead; any other type, garbage included, is parsed as JSON.
This guard answers such requests itself, before the service sees them:

- 401 without the right ``Authorization: Bearer`` token when a token is configured;
- 415 for any Content-Type but ``application/json`` (parameters allowed; a charset, if given, must
  be UTF-8, which JSON is), with a one-line message naming the header to send. A missing
  Content-Type is taken as JSON, as BentoML does: the body must still be a JSON object, so nothing
  is ambiguous, and clients that send raw bytes without a header (httpx ``content=``, requests
  ``data=``) work. ``curl -d`` and ``urllib`` send ``application/x-www-form-urlencoded`` and get
  the 415; 400 for more than one Content-Type header (BentoML would read the first, this guard
  every one);
- 413 past ``max_body_bytes`` (checked on Content-Length and while reading, so a body without a
  length cannot grow unbounded);
- 400 for a body that is not a JSON object.

Every refusal is a JSON object ``{"error": "<one line>"}``. GET endpoints (``/livez``, ``/readyz``,
``/metrics``, docs) pass untouched. It never logs bodies.

Settings: ``PRM_MAX_BODY_BYTES`` (default 4 MiB) and ``PRM_API_TOKEN`` (unset: no auth), read
when the server starts, or passed as options.

``quiet_refusals()`` keeps request content out of BentoML's own log: it logs every refused request
with a traceback, and the text of pydantic's ``ValidationError`` quotes the value it rejected
(``input_value='...'``), which can be a prompt or a step.
"""

from __future__ import annotations

import hmac
import json
import logging
import os

DEFAULT_MAX_BODY_BYTES = 4 << 20
JSON_MEDIA_TYPE = "application/json"
SEND_JSON = f"send the body as JSON with the header 'Content-Type: {JSON_MEDIA_TYPE}'"


class RequestGuard:
    def __init__(self, app, max_body_bytes: int | None = None, token: str | None = None):
        self.app = app
        self.max_body = max_body_bytes or int(os.environ.get("PRM_MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES)
        self.token = token if token is not None else (os.environ.get("PRM_API_TOKEN") or None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        raw_headers = scope.get("headers") or []
        headers = dict(raw_headers)
        if self.token and not hmac.compare_digest(headers.get(b"authorization", b""),
                                                  f"Bearer {self.token}".encode()):
            return await _reply(send, 401, "missing or wrong token: send the header 'Authorization: Bearer <token>'")
        refusal = content_type_problem([v for k, v in raw_headers if k.lower() == b"content-type"])
        if refusal:
            return await _reply(send, *refusal)
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return await _reply(send, 413, self._too_large(int(length)))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return await _reply(send, 413, self._too_large(size))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _json_problem(body)
        if problem:
            return await _reply(send, 400, problem)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _too_large(self, size: int) -> str:
        return (f"request body of {size} bytes is over the limit of {self.max_body} bytes; send fewer solutions "
                "per request (or raise PRM_MAX_BODY_BYTES on the server)")


def content_type_problem(values: list[bytes]) -> tuple[int, str] | None:
    """(status, one-line reason) for Content-Type header values the service does not take, or None."""
    if not values:
        return None  # taken as JSON, as BentoML does; the body must still be a JSON object
    if len(values) > 1:
        return 400, f"{len(values)} Content-Type headers; send one: {SEND_JSON}"
    value = values[0].decode("latin-1")
    media_type, *params = (part.strip() for part in value.split(";"))
    if media_type.lower() != JSON_MEDIA_TYPE:
        hint = ""
        if media_type.lower() == "application/x-www-form-urlencoded":
            hint = " (curl -d sends this type: add -H 'Content-Type: application/json', or use curl --json)"
        return 415, f"unsupported Content-Type {_shown(media_type or value)}: {SEND_JSON}{hint}"
    for param in params:
        name, _, charset = param.partition("=")
        charset = charset.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return 415, f"unsupported charset {_shown(charset)}: JSON is UTF-8; {SEND_JSON}"
    return None


def _shown(text: str) -> str:
    """A client-sent header value, quoted on one line, printable ASCII only, at most 60 characters."""
    return ascii(text[:60] + ("..." if len(text) > 60 else ""))


def _json_problem(body: bytes) -> str | None:
    """What is wrong with a body that should be one JSON object, or None."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return f"the request body is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if not isinstance(value, dict):
        return f"the request body must be a JSON object, got a JSON {type(value).__name__}"
    return None


async def _reply(send, status: int, message: str) -> None:
    payload = json.dumps({"error": " ".join(message.split())}).encode()  # one line
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


# The logger BentoML's `log_exception` writes "Exception on /score [POST]" + traceback to.
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


class RefusalFilter(logging.Filter):
    """Refused requests (a 4xx, or 503 under overload) become one line without the input; real server
    errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        summary = _refusal(exc) if exc is not None else None
        if summary is None:
            return True
        level, text = summary
        record.msg, record.args = f"{record.getMessage()} refused: {text}", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return True


def _refusal(exc: BaseException) -> tuple[int, str] | None:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):  # field locations and error types only: never the input
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}"
                          for e in exc.errors(include_url=False, include_context=False, include_input=False))
        return logging.INFO, f"400 {exc.error_count()} validation error(s): {where[:500]}"
    status = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(status, int) and (400 <= status < 500 or status == 503):
        return (logging.WARNING if status == 503 else logging.INFO), f"{status} {type(exc).__name__}"
    return None


def quiet_refusals() -> None:
    """Install ``RefusalFilter`` on BentoML's request-error logger (once per process)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, RefusalFilter) for f in logger.filters):
        logger.addFilter(RefusalFilter())
