"""The kit's HTTP, on the standard library's urllib: JSON requests, and streamed responses for downloads.

Redirects are never followed here: urllib would resend the license key to wherever a redirect points, so
the update code reads a `303` and follows it itself, without the key.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any

USER_AGENT = "keystead-client-python/0.1.0"


class Unreachable(Exception):
    """No answer: the connection failed, timed out, or broke off. The kit turns it into an `Offline` error."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Response:
    """An answer whose body is read as it comes (`body`), whatever its status."""

    status: int
    headers: Message
    body: IO[bytes]

    def read_json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body.read())
        except ValueError:
            return None
        except OSError as error:
            raise Unreachable(str(error)) from error


class Http:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    @contextmanager
    def open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Iterator[Response]:
        """Sends one request; yields the answer, 2xx or not. Raises `Unreachable` when there is none."""
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            answer = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            answer = error
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise Unreachable(f"{method} {url.split('?')[0]}: {error}") from error
        with answer:
            yield Response(status=answer.status or 0, headers=answer.headers, body=answer)

    def json(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> tuple[int, Any]:
        """Sends one request and reads the whole answer as JSON: (status, document or None)."""
        with self.open(
            method, url, headers={"Accept": "application/json", **(headers or {})}, json_body=json_body
        ) as answer:
            return answer.status, answer.read_json()


def error_message(document: Any, status: int) -> str:
    """The `error` of an `{"error": ...}` answer, or a stand-in naming the status."""
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])
    return f"HTTP {status}"
