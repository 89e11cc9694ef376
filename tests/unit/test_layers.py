"""STYLE.md §1: service packages never import each other; core imports none."""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import actrix

PACKAGE = Path(actrix.__file__).parent
SERVICES = ("signaling", "stun", "turn", "ks", "ais", "rooms", "admin")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


class LayerTests(SynchronousTestCase):
    def test_core_imports_no_service(self) -> None:
        """Nothing in actrix.core imports a service package."""
        for path in (PACKAGE / "core").rglob("*.py"):
            for name in _imports(path):
                for service in SERVICES:
                    self.assertFalse(
                        name.startswith(f"actrix.{service}"),
                        f"{path} imports {name}",
                    )

    def test_services_do_not_import_each_other(self) -> None:
        """A service package imports only itself, core and proto."""
        for service in SERVICES:
            directory = PACKAGE / service
            if not directory.exists():
                continue
            others = [s for s in SERVICES if s != service]
            if service == "turn":
                others.remove("stun")  # TURN answers STUN with the shared codec
            for path in directory.rglob("*.py"):
                for name in _imports(path):
                    for other in others:
                        self.assertFalse(
                            name == f"actrix.{other}"
                            or name.startswith(f"actrix.{other}."),
                            f"{path} imports {name}",
                        )
