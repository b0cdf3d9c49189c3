"""ASGI entry point for uvicorn workers: ``uvicorn --factory app.asgi:create_app_from_env``.

``teamcart serve`` resolves the embedded services, exports their URLs as ``TEAMCART_*``
variables and starts uvicorn with this factory, so every worker process builds the same app.
"""

from __future__ import annotations

from litestar import Litestar

from app.config import Settings
from app.wiring import create_app


def create_app_from_env() -> Litestar:
    return create_app(Settings.from_env(), server=True)
