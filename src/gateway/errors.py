"""OpenAI-shaped errors: the one exception type every layer raises toward the client."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error the client sees as ``{"error": {"message", "type", "param", "code"}}``.

    Raised anywhere on the request path; the HTTP layer renders it with ``status``.
    ``headers`` carries extras such as ``Retry-After``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> GatewayError:
    """A 400 for input the client can fix."""
    return GatewayError(400, message, param=param, code=code or "invalid_value")
