"""A password never shows: not in any response, not in any log line, whatever the request
gets (a sign-up refused for its password's length, its field's type, malformed JSON or a
taken email; a sign-in with a wrong password or an unknown email; and the successful ones).

Logging is configured process-wide and structlog caches each logger on first use, so within
the test process a line could escape any in-process capture. The requests therefore run in
a child process of their own (this module, run with ``python -m``), logging everything at
DEBUG; the test reads every byte it writes, on stdout and stderr, and first checks a canary
it logs both through structlog and through the standard library did come through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import structlog
from litestar.testing import AsyncTestClient

from app.config import Settings, settings_to_env

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq7#xK-never-logged-9"
SHORT = "Zq7#xKp"  # one character short of the shortest allowed
CANARY = "canary-" + "7f3c1e"
ANSWER = "ANSWER "  # prefix of the child's lines that report a response


def test_no_password_reaches_a_log_line_or_a_response(settings: Settings) -> None:
    env = {**os.environ, **settings_to_env(settings.replace(log_level="DEBUG", log_json=True))}
    child = subprocess.run(
        [sys.executable, "-m", "tests.integration.test_accounts_secrecy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    output = child.stdout.decode("utf-8", "replace") + child.stderr.decode("utf-8", "replace")
    assert child.returncode == 0, output
    assert output.count(CANARY) >= 2, output  # both kinds of log line are seen
    answers = [
        json.loads(line.removeprefix(ANSWER))
        for line in output.splitlines()
        if line.startswith(ANSWER)
    ]
    assert [answer["status"] for answer in answers] == [201, 409, 422, 422, 400, 400, 401, 401, 201]
    for secret in (SECRET, SHORT):
        assert secret not in output


async def _requests() -> None:
    """What the child does: the app of ``TEAMCART_*`` settings, requests that carry a
    password, each answer printed (status, headers, body) on one line."""
    from app.wiring import create_app

    app = create_app(Settings.from_env())
    structlog.get_logger("teamcart.test").warning("canary_structlog", value=CANARY)
    logging.getLogger("teamcart.test").warning("canary %s", CANARY)
    email = f"secret.{uuid.uuid4().hex[:10]}@example.com"
    up = "/api/v1/accounts"
    sign_in = "/api/v1/sessions/password"
    account = {"email": email, "password": SECRET, "display_name": "Ana"}
    async with AsyncTestClient(app=app) as client:
        requests: list[tuple[str, Any]] = [
            (up, account),
            (up, {**account, "email": email.upper()}),  # taken
            (up, {**account, "email": "x." + email, "password": SHORT[:-1]}),
            (up, {**account, "email": "y." + email, "password": SECRET * 13}),  # > 256
            (up, {**account, "email": "z." + email, "password": SECRET * 50}),  # > 1,000
            (up, f'{{"email": "{email}", "password": "{SECRET}'),  # cut inside the password
            (sign_in, {"email": email, "password": SECRET + "!"}),
            (sign_in, {"email": "w." + email, "password": SECRET}),
            (sign_in, {"email": email, "password": SECRET}),
        ]
        for path, body in requests:
            if isinstance(body, str):
                response = await client.post(
                    path, content=body, headers={"Content-Type": "application/json"}
                )
            else:
                response = await client.post(path, json=body)
            answer = {
                "status": response.status_code,
                "headers": dict(response.headers),
                "body": response.text,
            }
            print(ANSWER + json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(_requests())
