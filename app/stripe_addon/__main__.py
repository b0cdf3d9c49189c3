"""``python -m app.stripe_addon --port P --upstream http://127.0.0.1:Q``: the add-on as its
own process, as ``app.embedded.stripe_emulator`` starts it beside localstripe.

SIGTERM and SIGINT stop it cleanly (aiohttp's own handlers: the server closes, pending
webhook deliveries are cancelled); it keeps nothing on disk.
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from app.stripe_addon.server import create_addon


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.stripe_addon",
        description="Stripe Checkout Sessions in front of localstripe.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="localstripe's base URL")
    parser.add_argument(
        "--public-url",
        help="where browsers reach the add-on, for the hosted page's URLs "
        "(default http://HOST:PORT)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    public = args.public_url or f"http://{args.host}:{args.port}"
    app = create_addon(args.upstream, public_base=public)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
