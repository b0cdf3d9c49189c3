"""The browser client: ``/`` and invite links ``/join/<code>`` serve the page; ``/static/``
serves its CSS and JavaScript modules, shipped inside the package (no build step), and
``/favicon.ico`` the icon browsers ask for (the page links the same SVG)."""

from __future__ import annotations

import functools
from pathlib import Path

from litestar import Response, Router, get
from litestar.params import FromPath
from litestar.static_files import create_static_files_router

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@functools.cache
def _page_bytes() -> bytes:
    return (WEB_DIR / "index.html").read_bytes()


def _page() -> Response[bytes]:
    return Response(_page_bytes(), media_type="text/html", headers={"Cache-Control": "no-cache"})


@get("/", include_in_schema=False, sync_to_thread=False)
def index() -> Response[bytes]:
    return _page()


@get("/join/{code:str}", include_in_schema=False, sync_to_thread=False)
def invite(code: FromPath[str]) -> Response[bytes]:
    return _page()


@functools.cache
def _icon_bytes() -> bytes:
    return (WEB_DIR / "favicon.svg").read_bytes()


@get("/favicon.ico", include_in_schema=False, sync_to_thread=False)
def favicon() -> Response[bytes]:
    """An SVG under the name browsers ask for by default (Chromium and Firefox draw it)."""
    return Response(
        _icon_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


static_files = Router(
    path="/",
    route_handlers=[
        favicon,
        create_static_files_router(
            path="/static",
            directories=[WEB_DIR],
            include_in_schema=False,
            send_as_attachment=False,
        ),
    ],
)
"""The page's files and its icon, one router (``app.wiring`` registers it as it is)."""
