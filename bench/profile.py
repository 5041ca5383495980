"""py-spy attached to a gateway process under load, and a summary of where its time goes."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.processes import stop_process

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Where a sample belongs, by the first matching frame (innermost last): label, function, file suffix.
PHASES: list[tuple[str, str, str]] = [
    ("ingest: Ed25519 verify", "verify_signature", "attest_core/keys.py"),
    ("ingest: decode + checks", "check", "gateway/ingest.py"),
    ("ingest: database", "store_batch", "gateway/ingest.py"),
    ("sequencer: step", "step", "gateway/sequencer.py"),
    ("sequencer: checkpoint + receipts", "checkpoint", "gateway/sequencer.py"),
    ("MQTT: read and parse packets, hand readings to ingest", "data_received", "gateway/mqttconnection.py"),
    ("ingest: batching loop, acks, metrics", "_ingest_loop", "gateway/service.py"),
    ("asyncio event loop (wake-ups, I/O)", "_run_once", "asyncio/base_events.py"),
    ("API (uvicorn)", "serve", "uvicorn/server.py"),
]


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path

    def stop(self) -> Path | None:
        stop_process(self.proc, 30, sig=signal.SIGINT)  # py-spy writes its output on SIGINT
        return self.out if self.out.exists() else None


def record(pid: int, out: Path, rate: int = 100) -> Recording | None:
    """Start sampling ``pid`` (py-spy record, raw collapsed stacks); None without py-spy."""
    binary = py_spy()
    if binary is None:
        return None
    log = out.with_suffix(".log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603
            [binary, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", str(rate), "--nonblocking"],
            stdout=fh,
            stderr=fh,
        )
    return Recording(proc, out, log)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    return path


def _frame(text: str) -> tuple[str, str]:
    m = _FRAME.match(text.strip())
    if m is None:
        return text.strip(), ""
    return m.group("func"), _short(m.group("file"))


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and by total samples, and samples per gateway phase."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        names = [f"{func} ({file})" if file else func for func, file in frames]
        self_counts[names[-1]] += count
        for name in set(names):
            total_counts[name] += count
        label = "other"
        for func, file in reversed(frames):
            hit = next(
                (
                    p
                    for p, f, suffix in PHASES
                    if (func == f or func.endswith("." + f)) and file.endswith(suffix)
                ),
                None,
            )
            if hit is not None:
                label = hit
                break
        phases[label] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "percent": round(100 * n / max(samples, 1), 1)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": samples,
        "phases": table(phases),
        "self": table(self_counts),
        "total": table(total_counts),
    }


def format_summary(summary: dict[str, Any], top: int = 12) -> str:
    lines = [f"  {summary['samples']} samples (100 per second while a thread runs Python)"]
    for title, key in (("by phase", "phases"), ("top self", "self"), ("top total", "total")):
        lines.append(f"  {title}:")
        for row in summary[key][:top]:
            lines.append(f"    {row['percent']:5.1f}%  {row['function']}")
    return "\n".join(lines)
