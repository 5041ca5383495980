"""The benchmark uses only the gateway's public names (no ``_private`` module, function or attribute)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.services import REPO


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    gateway_aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "gateway":
            assert node.module is not None
            for alias in node.names:
                if any(part.startswith("_") for part in [*node.module.split("."), alias.name]):
                    found.append(f"from {node.module} import {alias.name}")
                gateway_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gateway":
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        found.append(f"import {alias.name}")
                    gateway_aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in gateway_aliases
            and node.attr.startswith("_")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return [f"{path.relative_to(REPO)}: {use}" for use in found]


def test_the_benchmark_imports_nothing_private_of_the_gateway() -> None:
    files = sorted((REPO / "bench").glob("*.py"))
    assert files
    assert [use for path in files for use in _private_uses(path)] == []


def test_the_publisher_builds_its_packets_with_the_gateway_encoder() -> None:
    from bench.publisher import build_packets
    from gateway import mqttwire as wire

    packets = build_packets([(b"t/x", b"p"), (b"attest/v1/d/readings", bytes(156))])
    assert packets[0] == b"\x32\x08\x00\x03t/x\x00\x01p"  # QoS 1, packet id 1, MQTT 3.1.1
    assert packets[1] == wire.publish(
        "attest/v1/d/readings", bytes(156), qos=1, packet_id=2, version=wire.MQTT311
    )
