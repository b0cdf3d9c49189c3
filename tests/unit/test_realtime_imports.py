"""The realtime package may import the standard library, ``domain``, redis and msgspec: never
``app``, nor the web framework (the app hands in what it needs)."""

from pathlib import Path

from tests.unit.test_domain_imports import _foreign_imports

REALTIME = Path(__file__).resolve().parents[2] / "realtime"
ALLOWED = {"domain", "realtime", "redis", "msgspec"}


def test_realtime_imports_only_domain_redis_and_msgspec() -> None:
    modules = sorted(REALTIME.rglob("*.py"))
    assert len(modules) > 3
    foreign = [
        line
        for path in modules
        for line in _foreign_imports(path)
        if line.split(" imports ")[1].split(".")[0] not in ALLOWED
    ]
    assert foreign == []
