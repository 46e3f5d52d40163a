"""What every client of an OpenAI-compatible API needs (embeddings, chat completions): the
retryable answers, the server's Retry-After, and the API's own error message."""

import email.utils
import math
from datetime import UTC, datetime

import httpx


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def api_error_message(response: httpx.Response) -> str:
    """The API's own explanation: OpenAI's ``{"error": {"message"}}``, else the start of the body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(payload.get("detail"), str):
            return payload["detail"]
    return response.text[:500]


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RetryableStatus(Exception):
    """A 429 or 5xx answer: worth another try, after the server's Retry-After if it sent one."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.status = response.status_code
        self.retry_after = response.headers.get("retry-after")
