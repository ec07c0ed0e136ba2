"""HTML answers: every page goes out with the same security headers."""

from __future__ import annotations

from aiohttp import web

# The pages have inline styles and nothing else: no scripts, images or frames, and no
# page of another site may frame them (clickjacking).
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


def html_page(text: str, status: int = 200, *, form_action: str = "'none'") -> web.Response:
    """An HTML response; ``form_action`` says where the page's forms may be sent."""
    response = web.Response(text=text, status=status, content_type="text/html")
    headers = response.headers
    headers["Content-Security-Policy"] = f"{_POLICY}; form-action {form_action}"
    headers["X-Frame-Options"] = "DENY"
    # Some pages show secrets (/setup/callback): never cached, never sent on as a referrer.
    headers["Cache-Control"] = "no-store"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    return response
