"""The ``teamcart`` command: ``serve``, ``migrate``, ``seed-demo``, ``token``, ``reconcile``,
``secrets rotate``,
``referrals report``.

Each command reads the same ``TEAMCART_*`` settings as the server. Where the database or Redis
URL is unset, the command starts (or joins) the embedded ones under the data folder, so
``teamcart seed-demo`` works beside a running ``teamcart serve`` with no configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.config import Settings, SettingsError, settings_to_env
from app.embedded import EMULATOR_SECRET_KEY, embedded_services, ensure_jwt_secret
from app.persistence import schema

if TYPE_CHECKING:
    from app.connect.settings import Rotation
    from app.secrets import Keyring
    from app.use_cases.payments.reconcile import Unrecorded

log = logging.getLogger("teamcart.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teamcart", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then serve HTTP and WebSockets")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="load the demo store first")

    commands.add_parser("migrate", help="apply database migrations up to the newest")
    commands.add_parser("seed-demo", help="create the demo store and print its ids")

    reconcile = commands.add_parser(
        "reconcile", help="find captured Stripe payments we never recorded (and repair them)"
    )
    reconcile.add_argument("--since", default="3d", type=_duration, help="e.g. 3d, 12h, 90m")
    reconcile.add_argument("--fix", action="store_true", help="record or refund each one")

    secrets = commands.add_parser("secrets", help="stores' secrets kept in the database")
    secret_commands = secrets.add_subparsers(dest="secrets_command", required=True)
    secret_commands.add_parser(
        "rotate", help="re-encrypt every store's secrets under the first TEAMCART_SECRETS_KEY"
    )

    referrals = commands.add_parser("referrals", help="referral commissions")
    referral_commands = referrals.add_subparsers(dest="referrals_command", required=True)
    report = referral_commands.add_parser(
        "report",
        help="every referrer's commissions: totals per referrer and currency as JSON lines, "
        "or every commission as CSV; progress on stderr",
    )
    report.add_argument("--csv", action="store_true", help="every commission, a header first")
    report.add_argument("--from", dest="start", default=None, help="RFC 3339 date or date-time")
    report.add_argument("--to", dest="end", default=None, help="the same (a date: that day too)")

    token = commands.add_parser("token", help="print a bearer token")
    token.add_argument("--admin", action="store_true", help="with the admin role")
    token.add_argument(
        "--staff",
        metavar="STORE_ID",
        default=None,
        help="staff of that store (reads, moves orders)",
    )
    token.add_argument("--user-id", default=None, help="subject (default: a new id)")
    token.add_argument("--name", default=None, help="display name (default: Admin or Guest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"teamcart: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "migrate":
        with embedded_services(settings, redis=False) as resolved:
            assert resolved.database_url is not None
            schema.upgrade(resolved.database_url)
        print("migrated to head")
        return 0
    if args.command == "seed-demo":
        with embedded_services(settings, redis=False) as resolved:
            assert resolved.database_url is not None
            schema.upgrade(resolved.database_url)
            print(json.dumps(asyncio.run(_seed(resolved.database_url)), indent=2))
        return 0
    if args.command == "reconcile":
        return _reconcile(settings, args.since, fix=args.fix)
    if args.command == "secrets":
        return _rotate_secrets(settings)
    if args.command == "referrals":
        return _referrals_report(settings, args)
    if args.command == "token":
        from app.auth import issue_token

        secret = ensure_jwt_secret(settings).jwt_secret
        assert secret is not None
        name = args.name or ("Admin" if args.admin else "Staff" if args.staff else "Guest")
        try:
            issued = issue_token(
                secret,
                display_name=name,
                user_id=args.user_id,
                admin=args.admin,
                staff_of=args.staff,
            )
        except ValueError:
            print(f"teamcart token: --staff {args.staff!r} is not a store id", file=sys.stderr)
            return 2
        print(issued.token)
        return 0
    raise AssertionError(args.command)


async def _seed(database_url: str) -> dict[str, object]:
    from app.demo import seed_demo
    from app.persistence.database import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        demo = await seed_demo(engine)
    finally:
        await engine.dispose()
    return {"store_id": demo.store_id, "products": demo.product_ids, "coupon": demo.coupon_code}


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        print(f"teamcart: --port must be 1..65535, got {args.port}", file=sys.stderr)
        return 2
    public = settings.public_url or f"http://{_connect_host(args.host)}:{args.port}"
    # SIGTERM (systemd, Docker, Kubernetes) stops the server as Ctrl-C does: uvicorn shuts
    # down gracefully, then re-raises the signal, which lands here and unwinds every
    # embedded service's cleanup instead of killing the process on the spot.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        _serve_embedded(settings, args, public)
    except (Terminated, KeyboardInterrupt):
        log.info("stopped by signal")
        return 0
    log.info("stopped")
    return 0


class Terminated(Exception):
    """SIGTERM arrived: stop as for Ctrl-C."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _serve_embedded(settings: Settings, args: argparse.Namespace, public: str) -> None:
    import uvicorn

    with embedded_services(settings, server_url=public) as resolved:
        assert resolved.database_url is not None
        schema.upgrade(resolved.database_url)
        log.info("database migrated to head")
        if args.demo:
            log.info("demo catalog: %s", json.dumps(asyncio.run(_seed(resolved.database_url))))
        os.environ.update(settings_to_env(resolved))
        if args.workers > 1:
            metrics_dir = resolved.data_dir / "prometheus"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.absolute())
        log.info("serving on %s with %d worker(s)", public, args.workers)
        uvicorn.run(
            "app.asgi:create_app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=5,
        )


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration like 3d, 12h or 90m, not {text!r}")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: number})


def _reconcile(settings: Settings, since: timedelta, *, fix: bool) -> int:
    if settings.uses_stripe_emulator:
        print(
            "teamcart: reconcile talks to Stripe: set TEAMCART_STRIPE_SECRET_KEY "
            "(or TEAMCART_STRIPE_API_BASE for an emulator)",
            file=sys.stderr,
        )
        return 2
    with embedded_services(settings, redis=False) as resolved:
        assert resolved.database_url is not None
        found = asyncio.run(_reconcile_async(resolved, since, fix=fix))
    for item in found:
        print(json.dumps(dataclasses.asdict(item)))
    verb = "repaired" if fix else "found"
    print(f"{len(found)} unrecorded captured payment(s) {verb}", file=sys.stderr)
    return 1 if found and not fix else 0


async def _reconcile_async(settings: Settings, since: timedelta, *, fix: bool) -> list[Unrecorded]:
    from app.payments.gateway import StripeGateway
    from app.persistence.database import create_engine
    from app.use_cases.payments.reconcile import reconcile
    from app.wiring import build_runner

    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=2)
    gateway = StripeGateway(
        settings.stripe_secret_key or EMULATOR_SECRET_KEY, api_base=settings.stripe_api_base
    )
    started = int((datetime.now(UTC) - since).timestamp())
    try:
        runner = build_runner(engine, gateway, relay=None)  # the dispatchers project its events
        return await reconcile(runner, since=started, fix=fix)
    finally:
        await gateway.close()
        await engine.dispose()


def _rotate_secrets(settings: Settings) -> int:
    """``teamcart secrets rotate``: every store's secrets re-sealed under the first key
    (run after putting a new key first in ``TEAMCART_SECRETS_KEY``); 1 if any could not be
    opened with the keys configured (they are left as they were)."""
    from app.secrets import SecretsError, keyring_for

    with embedded_services(settings, redis=False) as resolved:
        assert resolved.database_url is not None
        schema.upgrade(resolved.database_url)
        try:
            keyring = keyring_for(resolved.secrets_keys, resolved.data_dir)
        except SecretsError as exc:
            print(f"teamcart secrets rotate: {exc}", file=sys.stderr)
            return 2
        rotation = asyncio.run(_rotate_async(resolved.database_url, keyring))
    print(
        json.dumps(
            {
                "key_id": keyring.primary_id,
                "resealed": rotation.resealed,
                "already_current": rotation.current,
                "unreadable_stores": list(rotation.unreadable),
            }
        )
    )
    if rotation.unreadable:
        print(
            f"{len(rotation.unreadable)} store(s) hold secrets no configured key opens: keep "
            "the key they were sealed with in TEAMCART_SECRETS_KEY, or set them again",
            file=sys.stderr,
        )
        return 1
    return 0


async def _rotate_async(database_url: str, keyring: Keyring) -> Rotation:
    from app.connect.settings import rotate_secrets
    from app.persistence.database import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        return await rotate_secrets(engine, keyring)
    finally:
        await engine.dispose()


def _referrals_report(settings: Settings, args: argparse.Namespace) -> int:
    """``teamcart referrals report``: read in batches (``app.referrals.reports``), each
    batch's progress on stderr once there is more than one."""
    from app.referrals.reports import BATCH, parse_moment

    try:
        start = None if args.start is None else parse_moment(args.start, end=False)
        end = None if args.end is None else parse_moment(args.end, end=True)
    except (ValueError, OverflowError) as exc:
        print(f"teamcart referrals report: --from/--to: {exc}", file=sys.stderr)
        return 2
    with embedded_services(settings, redis=False) as resolved:
        assert resolved.database_url is not None
        read = asyncio.run(_report_async(resolved.database_url, args.csv, start, end, BATCH))
    print(f"teamcart referrals report: {read} commission(s)", file=sys.stderr)
    return 0


async def _report_async(
    database_url: str, as_csv: bool, start: datetime | None, end: datetime | None, batch: int
) -> int:
    from app.persistence.database import create_engine
    from app.referrals.reports import write_report

    def progress(read: int, total: int) -> None:
        if total > batch:
            print(f"teamcart referrals report: {read} of {total} read", file=sys.stderr)

    engine = create_engine(database_url, pool_size=1)
    try:
        return await write_report(
            engine, sys.stdout, as_csv=as_csv, start=start, end=end, progress=progress
        )
    finally:
        await engine.dispose()


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


if __name__ == "__main__":
    raise SystemExit(main())
