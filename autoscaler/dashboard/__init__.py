"""The dashboard: one page (``GET /``) of vanilla JavaScript and inline SVG charts, served by
the service itself (no CDN, no third-party library), polling ``/api/v1/dashboard/...``.

``router`` serves the page and its two static files; the page holds no data, so it needs no
token: the data endpoints do (the token typed in the login form is kept in sessionStorage).
"""

from autoscaler.dashboard.pages import router

__all__ = ["router"]
