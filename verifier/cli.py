"""``python -m verifier``: arguments, exit codes and output.

Exit codes (:class:`verifier.errors.ExitCode`): 0 valid and backed (or a valid
checkpoint/proof, or a monitor round without alert), 1 valid evidence that does
not back the claim, 2 invalid evidence (or a monitor alert), 3 usage error,
4 gateway unreachable (``monitor``/``witness --once`` only), 130 Ctrl-C.

A key string that does not parse is a usage error (3); a key that parses but
did not sign the evidence makes the evidence invalid (2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from attest_core.bundle import Progress as ProgressCallback
from attest_core.checkpoint import WitnessKey
from attest_core.errors import AttestError
from verifier import checks, witnesskey
from verifier.arguments import build_parser
from verifier.bundle import verify_bundle
from verifier.errors import ExitCode, UsageError, VerifierError
from verifier.html import render_html
from verifier.inputs import load_log_key, load_witness_key, read_file, witness_policy
from verifier.render import render_check, render_report
from verifier.report import bundle_info, invalid_report, valid_report
from verifier.state import StateDir

# --- output helpers -------------------------------------------------------------------------


def _stdout_console() -> Console:
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console.width = 120
    return console


def _print_json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def _progress(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr while a large bundle is verified (only on a terminal)."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        label = {"proof": "checking the Merkle proof", "readings": "verifying readings"}.get(stage, stage)
        if stage not in tasks:
            tasks[stage] = bar.add_task(label, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def _check_html_target(path: str | None) -> None:
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--html: {target} is a directory")
    if not target.parent.is_dir():
        raise UsageError(f"--html: the directory {target.parent} does not exist")


def _write_html(path: str, doc: dict[str, Any]) -> None:
    try:
        Path(path).write_text(render_html(doc), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--html: cannot write {path}: {exc.strerror or exc}") from None


# --- commands -------------------------------------------------------------------------------


def _witnesses(args: argparse.Namespace) -> tuple[list[WitnessKey], int]:
    keys = [load_witness_key(value) for value in args.witness_key]
    return keys, witness_policy(keys, args.min_witnesses)


def cmd_bundle(args: argparse.Namespace) -> int:
    log_key = load_log_key(args.log_key)
    witnesses, min_witnesses = _witnesses(args)
    _check_html_target(args.html)
    data = read_file(args.bundle, "BUNDLE")
    info = bundle_info(args.bundle, data)
    show_progress = not args.json and sys.stderr.isatty()
    started = time.perf_counter()
    try:
        with _progress(show_progress) as progress:
            result = verify_bundle(
                data,
                log_key,
                witnesses=witnesses,
                min_witnesses=min_witnesses,
                progress=progress,
                jobs=args.jobs,
                require_full=args.require_full,
                require_meter_signed=args.require_meter_signed,
            )
    except AttestError as exc:
        doc = invalid_report(exc.code, exc.message, log_key, info)
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError, MemoryError) as exc:
        # Never a traceback, and never "backed": evidence the core cannot handle is invalid.
        doc = invalid_report(
            "internal_error",
            f"the verifier could not process this evidence ({type(exc).__name__}: {exc}); "
            "please report this as a bug",
            log_key,
            info,
        )
    else:
        doc = valid_report(
            result,
            time.perf_counter() - started,
            log_key,
            info,
            require_full=args.require_full,
            require_meter_signed=args.require_meter_signed,
        )
    if args.html is not None:
        _write_html(args.html, doc)
    if args.json:
        _print_json(doc)
    else:
        render_report(doc, _stdout_console())
        if args.html is not None:
            sys.stderr.write(f"HTML report written to {args.html}\n")
    return int(doc["exit_code"])


def _show_check(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    if args.json:
        _print_json(doc)
    else:
        render_check(doc, _stdout_console())
    return int(doc["exit_code"])


def cmd_checkpoint(args: argparse.Namespace) -> int:
    log_key = load_log_key(args.log_key)
    witnesses, min_witnesses = _witnesses(args)
    note = read_file(args.file, "FILE", checks.MAX_NOTE_BYTES)
    return _show_check(args, checks.check_checkpoint(note, log_key, witnesses, min_witnesses))


def cmd_inclusion(args: argparse.Namespace) -> int:
    log_key = load_log_key(args.log_key)
    note = read_file(args.checkpoint, "--checkpoint", checks.MAX_NOTE_BYTES)
    entry = read_file(args.entry, "--entry", checks.MAX_ENTRY_BYTES)
    proof = read_file(args.proof, "--proof", checks.MAX_PROOF_FILE_BYTES)
    return _show_check(args, checks.check_inclusion(note, entry, args.index, proof, log_key))


def cmd_consistency(args: argparse.Namespace) -> int:
    log_key = load_log_key(args.log_key)
    old = read_file(args.old, "--old", checks.MAX_NOTE_BYTES)
    new = read_file(args.new, "--new", checks.MAX_NOTE_BYTES)
    proof = read_file(args.proof, "--proof", checks.MAX_PROOF_FILE_BYTES)
    return _show_check(args, checks.check_consistency(old, new, proof, log_key))


def _follow(args: argparse.Namespace, witness: witnesskey.WitnessSigner | None, submit: bool) -> int:
    log_key = load_log_key(args.log_key)
    try:
        from verifier import monitor  # httpx is needed here only, not for offline checks
    except ImportError as exc:
        raise UsageError(
            f"{args.command} needs the httpx package, which is not installed ({exc}): pip install httpx"
        ) from None
    options = monitor.Options(
        gateway=args.gateway,
        log_key=log_key,
        state=StateDir(args.state, log_key),
        interval=args.interval,
        once=args.once,
        witness=witness,
        submit=submit,
        claims=getattr(args, "claims", False),
    )
    log = monitor.Log(sys.stderr, "witness" if witness else "monitor")
    return int(monitor.run(options, log))


def cmd_monitor(args: argparse.Namespace) -> int:
    return _follow(args, None, False)


def cmd_witness(args: argparse.Namespace) -> int:
    signer, warning = witnesskey.load_private_key(args.witness_key_file)
    if args.name is not None and args.name != signer.name:
        raise UsageError(f"--name {args.name!r} is not the name in {args.witness_key_file} ({signer.name!r})")
    if warning:
        sys.stderr.write(f"warning: {warning}\n")
    return _follow(args, signer, args.submit)


def cmd_witness_keygen(args: argparse.Namespace) -> int:
    key = witnesskey.generate(args.name, args.out)
    sys.stdout.write(key.to_string() + "\n")
    sys.stderr.write(
        f"Private key written to {args.out} (mode 600): keep it secret and backed up.\n"
        "The line above is the public witness key: publish it for auditors (--witness-key).\n"
    )
    return int(ExitCode.OK)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bundle": cmd_bundle,
    "checkpoint": cmd_checkpoint,
    "inclusion": cmd_inclusion,
    "consistency": cmd_consistency,
    "monitor": cmd_monitor,
    "witness": cmd_witness,
    "witness-keygen": cmd_witness_keygen,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verifier with ``argv`` (default: the command line) and return the exit code."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return int(exc.code or 0) if isinstance(exc.code, int) else int(ExitCode.USAGE)
        if args.command is None:
            parser.print_help(sys.stderr)
            return int(ExitCode.USAGE)
        return COMMANDS[args.command](args)
    except VerifierError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # e.g. piped into head
        return int(ExitCode.OK)
