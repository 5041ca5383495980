"""Each package has one exception hierarchy: every exception class it defines derives from its root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import attest_core
import edge_agent
import gateway
import verifier
from attest_core.errors import AttestError
from edge_agent.errors import AgentError
from gateway.errors import GatewayError
from verifier.errors import VerifierError

SKIP = {"gateway.__main__", "edge_agent.__main__", "verifier.__main__"}


def _exception_classes(package: object) -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):  # type: ignore[attr-defined]
        if module_info.name in SKIP:
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


@pytest.mark.parametrize(
    ("package", "root"),
    [
        (attest_core, AttestError),
        (edge_agent, AgentError),
        (gateway, GatewayError),
        (verifier, VerifierError),
    ],
    ids=["attest_core", "edge_agent", "gateway", "verifier"],
)
def test_every_exception_a_package_defines_derives_from_its_root(package: object, root: type) -> None:
    classes = _exception_classes(package)
    assert classes, "no exception classes found: the walk is broken"
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, root))
    assert outside == []
