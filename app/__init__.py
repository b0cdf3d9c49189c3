"""Everything that talks to the outside world.

Litestar routes and the WebSocket endpoint (``app.routes``), authentication (``app.auth``),
settings (``app.config``), PostgreSQL persistence (``app.persistence``), the embedded default
services (``app.embedded``), logging and metrics (``app.observability``), problem responses
(``app.errors``), the command line (``app.cli``) and the one place that joins it all
(``app.wiring``). Business rules live in ``domain``; the live view in ``realtime``.
"""
