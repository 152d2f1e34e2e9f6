"""The API's errors: JSON `{"code": "...", "message": "..."}` with a stable machine code and a human message.

Every failure the API answers goes through `ApiError`, including Django Ninja's own validation, 404 and
authentication errors, so clients see one shape everywhere.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse

# Django logs its own 500s here (and mails them to ADMINS); the API's go to the same place.
request_logger = logging.getLogger("django.request")


class ApiError(Exception):
    """An error answer. `errors` maps field names to messages (validation failures only)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def internal_error() -> ApiError:
    """What a request that crashed answers (the details go to the log, not to the client)."""
    return ApiError(500, "internal_error", "Something went wrong on our side. It has been logged.")


def log_internal_error(request: HttpRequest) -> None:
    """Log the exception being handled as Django logs an unhandled one (so ADMINS are mailed too)."""
    request_logger.error(
        "Internal Server Error: %s",
        request.path,
        exc_info=True,
        extra={"status_code": 500, "request": request},
    )


def register_handlers(api) -> None:
    """Make Ninja answer its own errors in the API's shape."""
    from django.http import Http404
    from ninja.errors import AuthenticationError, HttpError, ValidationError

    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        response = api.create_response(request, exc.body(), status=exc.status)
        for name, value in exc.headers.items():
            response[name] = value
        return response

    def validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        errors: dict[str, list[str]] = {}
        for error in exc.errors:
            location = [str(part) for part in error.get("loc", ()) if part not in {"body", "payload"}]
            errors.setdefault(".".join(location) or "request", []).append(error.get("msg", "Invalid."))
        return api_error(
            request, ApiError(422, "validation_error", "The request is not valid.", errors=errors)
        )

    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return api_error(request, ApiError(404, "not_found", "No such object."))

    def authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return api_error(
            request,
            ApiError(
                401,
                "authentication_required",
                "Send your API key as 'Authorization: Bearer <key>'.",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            ),
        )

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400:  # Ninja could not parse the body
            return api_error(request, ApiError(400, "invalid_json", "The request body is not valid JSON."))
        return api_error(request, ApiError(exc.status_code, "http_error", str(exc)))

    def unexpected_error(request: HttpRequest, exc: Exception) -> HttpResponse:
        # Ninja's default re-raises, and Django answers an HTML page: the API answers JSON like every error.
        log_internal_error(request)
        response = api_error(request, internal_error())
        response._has_been_logged = True  # Django would log the 500 again, without the traceback
        return response

    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(ValidationError, validation_error)
    api.add_exception_handler(Http404, not_found)
    api.add_exception_handler(AuthenticationError, authentication_error)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(Exception, unexpected_error)
