"""The Dockerfile's images, without a Docker engine: each stage's WORKDIR, COPY and `pip install`
steps are carried out in a temporary root and a fresh venv, as the image's user would have them,
then every module of the image's program is imported and its command answers --help.  A lock
that misses a dependency, a COPY that misses a file, or a stage that runs as root fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from tests.deploy.deployfiles import (
    REPO,
    dockerfile_instructions,
    dockerignore_patterns,
    dockerignored,
    exec_form,
    stage_chain,
)

IMPORT_ALL = (
    "import importlib, pkgutil, sys; package = importlib.import_module(sys.argv[1]); "
    "[importlib.import_module(m.name) for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.') "
    "if not m.name.endswith('.__main__')]"
)


def copy_into(root: Path, workdir: str, args: str) -> None:
    words = [w for w in args.split() if not w.startswith("--")]
    sources, dest = words[:-1], words[-1]
    target = root / PurePosixPath(workdir, dest).relative_to("/")
    patterns = dockerignore_patterns()
    for source in sources:
        assert not dockerignored(source, patterns), f"COPY {source}: left out of the build context"
        path = REPO / source
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            into = target / path.name if dest.endswith("/") or len(sources) > 1 else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, into)


@pytest.mark.slow
@pytest.mark.parametrize(("target", "package"), [("gateway", "gateway"), ("simulator", "edge_agent")])
def test_the_image_installs_from_its_lock_and_runs(target: str, package: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    workdir, user, cmd = "/", "root", ["?"]
    for ins in stage_chain(dockerfile_instructions(), target):
        if ins.keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir, ins.args))
            (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            copy_into(root, workdir, ins.args)
        elif ins.keyword == "RUN" and "pip install" in ins.args:
            script = ins.args.replace(" /src", f" {root}/src")  # the image's absolute paths, under root
            done = subprocess.run(["sh", "-c", script], cwd=root / workdir.lstrip("/"), env=env,
                                  capture_output=True, text=True, timeout=900)  # fmt: skip
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        elif ins.keyword == "USER":
            user = ins.args
        elif ins.keyword == "CMD":
            cmd = exec_form(ins.args)
    assert user not in ("root", "0"), f"the {target} image runs as root"
    assert cmd[:3] == ["python", "-m", package], cmd
    python = str(venv / "bin" / "python")
    # away from the checkout, so that the installed copy is what runs
    imported = subprocess.run([python, "-c", IMPORT_ALL, package], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    helped = subprocess.run([python, "-m", package, cmd[3], "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    located = subprocess.run([python, "-c", f"import {package}; print({package}.__file__)"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert str(venv) in located.stdout, f"{package} was not installed into the image's environment"
