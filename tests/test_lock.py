"""The lock files (requirements/*.txt) match pyproject.toml, and this venv was installed from one.

Offline and fast: each lock's header carries the fingerprint of the dependency lists it was
resolved from (requirements/lock.py), and every dependency declared for it must be pinned there
at a version its specifier admits.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def load_lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("requirements_lock", REPO / "requirements" / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


lock_module = load_lock_module()
LOCKS = {lock.name: lock for lock in lock_module.LOCKS}


def pinned(path: Path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in lock_module.pins(path).items()}


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = lock_module.project()
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return requirements


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_the_lock_was_resolved_from_the_current_pyproject(name: str) -> None:
    assert lock_module.stale(LOCKS[name]) is None, "run `make lock` and commit requirements/"


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_declared_dependency_is_pinned_at_an_admitted_version(name: str) -> None:
    lock = LOCKS[name]
    pins = pinned(lock.path)
    for requirement in declared(lock.extras):
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned in {name}"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}: {requirement} vs =={version}"
        )


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_pin_is_exact_and_hashed_where_the_lock_says(name: str) -> None:
    lock = LOCKS[name]
    text = lock.path.read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text[text.index("\n", text.index("inputs-sha256")) + 1 :])
    requirements = [e for e in entries if not e.startswith("#")]
    assert requirements, f"{name} pins nothing"
    for entry in requirements:
        first = entry.splitlines()[0]
        assert re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+", first), f"{name}: not an exact pin: {first!r}"
        hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", entry)
        assert bool(hashes) == lock.hashes, f"{name}: {first!r} hashes {hashes}"


def test_the_check_names_a_stale_lock() -> None:
    """What `make venv` runs first: a lock whose inputs changed is refused by name."""
    edge = LOCKS["edge.txt"]
    changed = lock_module.Lock(edge.name, (*edge.extras, "demo"), edge.platform, edge.hashes, edge.purpose)
    assert lock_module.stale(changed) == (
        "requirements/edge.txt was resolved from other dependency lists than pyproject.toml's"
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "requirements" / "lock.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")


def test_this_venv_has_the_versions_of_the_dev_lock() -> None:
    """`make venv` installs from requirements/dev.txt: what runs these tests is what the lock says."""
    wrong = {}
    for name, version in pinned(LOCKS["dev.txt"].path).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"(locked, installed) differ: {wrong}; run make venv"


def test_the_pi_gets_the_versions_the_simulator_image_is_built_with() -> None:
    """pi.txt (no hashes, for piwheels) pins the same versions as edge.txt (with PyPI's hashes)."""
    assert pinned(LOCKS["pi.txt"].path) == pinned(LOCKS["edge.txt"].path)
