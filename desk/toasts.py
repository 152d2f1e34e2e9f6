"""Toasts: short outcome messages shown bottom right (`role="status"`), sent out-of-band with htmx."""

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


def toast_response(
    request: HttpRequest, message: str, *, level: str = "info", status: int = 200
) -> HttpResponse:
    """A response that changes nothing on the page but shows `message` as a toast."""
    html = render_to_string("partials/_toast.html", {"message": message, "level": level}, request=request)
    response = HttpResponse(html, status=status)
    response["HX-Reswap"] = "none"
    return response
