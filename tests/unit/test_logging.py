"""Log lines come out in the configured format, with the request's id, whatever the format."""

import json

import pytest
import structlog
from litestar import Litestar, get
from litestar.testing import TestClient

from app.observability import RequestIdMiddleware, structlog_plugin


@get("/hello", sync_to_thread=False)
def hello() -> str:
    structlog.get_logger("teamcart.test").info("said_hello", to="world")
    return "hi"


def _app(*, as_json: bool) -> Litestar:
    return Litestar(
        [hello],
        plugins=[structlog_plugin(level="INFO", as_json=as_json)],
        middleware=[RequestIdMiddleware()],
    )


@pytest.mark.parametrize("as_json", [True, False])
def test_an_info_line_is_written_in_the_configured_format(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(_app(as_json=as_json)) as client:
        response = client.get("/hello", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    lines = [line for line in capsys.readouterr().out.splitlines() if "said_hello" in line]
    assert len(lines) == 1
    if as_json:
        record = json.loads(lines[0])
        assert record["event"] == "said_hello"
        assert record["request_id"] == "req-42"
        assert record["to"] == "world"
    else:
        assert "said_hello" in lines[0]
        assert "req-42" in lines[0]
        assert not lines[0].lstrip().startswith("{")
