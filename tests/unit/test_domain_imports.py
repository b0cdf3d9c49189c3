"""The domain package must import nothing but the standard library and itself."""

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "domain"


def _foreign_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    foreign: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                continue  # relative: inside domain
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top != "domain" and top not in sys.stdlib_module_names:
                foreign.append(f"{path.name}:{node.lineno} imports {module}")
    return foreign


def test_domain_has_modules_to_check() -> None:
    assert (DOMAIN / "__init__.py").is_file()
    assert len(list(DOMAIN.rglob("*.py"))) > 1


def test_domain_imports_only_the_standard_library() -> None:
    foreign = [line for path in sorted(DOMAIN.rglob("*.py")) for line in _foreign_imports(path)]
    assert foreign == []


def test_the_check_catches_a_third_party_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os\nfrom sqlalchemy import select\nfrom . import sibling\n")
    assert _foreign_imports(module) == ["bad.py:2 imports sqlalchemy"]
