"""``GET /ui``: the dashboard, a static page (plain HTML, CSS and JavaScript shipped in the package, no
build step, nothing fetched from elsewhere) that draws the registered pipelines, runs them, lists the
service's jobs (``GET /jobs``, filtered by status and pipeline), shows a job's progress, error, results and
output and cancels it, and shows the service's health, all through the JSON API.

The page itself needs no token: it holds no data. Its API calls carry the token the user enters when an
answer is 401, kept in the browser's ``sessionStorage``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

__all__ = ["blueprint", "FILES"]

#: the folder of the page's files (package data)
FILES = Path(__file__).resolve().parent.parent / "ui_files"

blueprint = Blueprint("ui", __name__, static_folder=str(FILES), static_url_path="/ui/static")


@blueprint.get("/ui")
def index() -> Response:
    """Return the dashboard's HTML page."""
    response = send_from_directory(FILES, "index.html")
    # the page loads only its own files; data is shown as text, and this forbids any inline script
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
