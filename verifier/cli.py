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
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from attest_core.bundle import Progress as ProgressCallback
from attest_core.checkpoint import WitnessKey
from attest_core.errors import AttestError
from verifier import checks, witnesskey
from verifier.bundle import verify_bundle
from verifier.errors import ExitCode, UsageError, VerifierError
from verifier.html import render_html
from verifier.inputs import load_log_key, load_witness_key, read_file, witness_policy
from verifier.render import render_check, render_report
from verifier.report import bundle_info, invalid_report, valid_report
from verifier.state import StateDir

PROG = "python -m verifier"

DESCRIPTION = """\
The iot-attest verifier: check, on your own computer, that a cash-flow claim
about energy assets (EV chargers, solar panels) is backed by readings the
devices signed and the log recorded.

It trusts only the log key you give it with --log-key. Get that key from a
channel you trust (the issuer's prospectus, the operator's signed website),
never from the evidence itself, and compare its key id and fingerprint.
"""

EPILOG = """\
quick start (an auditor with bundle.json and the log key in log-key.txt):
  python -m verifier bundle bundle.json --log-key log-key.txt --html report.html

exit codes:
  0  valid (and, for a bundle, the claim is backed)
  1  the evidence is valid but does not back the claim
  2  the evidence is invalid (bad signature or proof, tampered or unreadable
     bundle, a key that does not match); for monitor/witness: an alert
  3  usage error: a missing file, bad arguments, a malformed key string
  4  monitor/witness --once: the gateway could not be reached

Run "python -m verifier COMMAND --help" for the details of a command.
"""

KEY_HELP = (
    "the log's public key: a key string <name>+<key id>+<key>, or a file holding it "
    "(e.g. log-key.txt). Obtain it from a trusted channel, not from the evidence."
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with code 3 (not argparse's 2, which means invalid evidence)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _jobs(text: str) -> int:
    value = _non_negative(text)
    return value or os.cpu_count() or 1


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.01 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text} is not between 0.01 and 86400 seconds")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def _add_witness_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--witness-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a witness's public key string <name>+<key id>+<key> (or a file holding it) whose cosignature "
        "you require on the checkpoint; repeat for several witnesses",
    )
    p.add_argument(
        "--min-witnesses",
        type=_non_negative,
        metavar="N",
        help="how many of the --witness-key witnesses must have cosigned (default: all of them)",
    )


def _add_follow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gateway",
        required=True,
        type=_url,
        metavar="URL",
        help="the gateway's address, e.g. https://gateway.example.com",
    )
    p.add_argument("--log-key", required=True, metavar="KEY", help=KEY_HELP)
    p.add_argument(
        "--state",
        required=True,
        metavar="DIR",
        help="a directory of its own where the last verified checkpoint and any alert evidence are "
        "kept (created if missing; keep it between runs)",
    )
    p.add_argument(
        "--interval",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds between two looks at the log (default: 10)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="look once and exit: 0 nothing wrong, 2 alert, 4 gateway unreachable (for cron jobs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def command(name: str, summary: str, description: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=description, epilog=epilog, formatter_class=_Formatter
        )

    p = command(
        "bundle",
        "verify an evidence bundle and its claim",
        "Verify an evidence bundle (bundle.json) offline and say whether it backs its claim.\n\n"
        "Checks the log's signature on the checkpoint, the Merkle proof of every entry, every device's\n"
        "enrolment and every reading's signature, then recomputes the energy and revenue the readings\n"
        "attest and compares them with the claim. Prints the verdict, a table per asset and every\n"
        "finding (see docs/protocol.md, section 7, for what each finding means).",
        "exit codes:\n"
        "  0  the evidence is valid and the claim is backed\n"
        "  1  the evidence is valid but the claim is not backed (it claims more than the devices\n"
        "     attest, or a plausibility check fails: see the fatal findings)\n"
        "  2  the evidence is invalid: a bad signature or proof, a tampered or unparsable bundle,\n"
        "     a log key that does not match\n"
        "  3  a usage error: a missing file, bad arguments, a malformed key string\n\n"
        "examples:\n"
        "  python -m verifier bundle bundle.json --log-key log-key.txt --html report.html\n"
        "  python -m verifier bundle bundle.json --log-key log-key.txt --jobs 0   # on every core",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="the evidence bundle file (JSON)")
    p.add_argument("--log-key", required=True, metavar="KEY", help=KEY_HELP)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one machine-readable JSON report (iot-attest-report/v1) instead of the tables",
    )
    p.add_argument(
        "--html", metavar="REPORT.html", help="also write a self-contained HTML report with a chart per asset"
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="check the readings' signatures in N worker processes (0: one per CPU; default: 1, "
        "in this process); the result is the same, only faster on several cores",
    )
    _add_witness_options(p)

    p = command(
        "checkpoint",
        "verify a signed checkpoint",
        "Verify a signed checkpoint of the log (a C2SP signed note such as checkpoint.txt): is it signed\n"
        "by the log key (and cosigned by the witnesses you require)? Prints the log's origin, tree\n"
        "size, root hash, signing time and the witnesses that cosigned it.",
        "exit codes: 0 valid, 2 invalid, 3 usage error.\n\n"
        "example:\n  python -m verifier checkpoint checkpoint.txt --log-key log-key.txt",
    )
    p.add_argument("file", metavar="FILE", help="the signed checkpoint note")
    p.add_argument("--log-key", required=True, metavar="KEY", help=KEY_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON document (iot-attest-check/v1)")
    _add_witness_options(p)

    p = command(
        "inclusion",
        "verify that an entry is in the log",
        "Verify that one log entry is in the log at a given index, under a signed checkpoint.\n"
        "The proof is the JSON the gateway serves at\n"
        '  GET /v1/log/proof/inclusion?index=I&size=N   ->  {"index": I, "size": N, "hashes": [...]}\n'
        "where N must be the checkpoint's tree size; the entry is the exact bytes served at\n"
        "  GET /v1/log/entries/I",
        "exit codes: 0 valid, 2 invalid, 3 usage error.\n\n"
        "example:\n"
        "  python -m verifier inclusion --log-key log-key.txt --checkpoint checkpoint.txt \\\n"
        "      --entry entry-7.bin --index 7 --proof inclusion-7.json",
    )
    p.add_argument("--log-key", required=True, metavar="KEY", help=KEY_HELP)
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="the signed checkpoint note")
    p.add_argument("--entry", required=True, metavar="ENTRY_FILE", help="the entry's raw bytes")
    p.add_argument(
        "--index", required=True, type=_non_negative, metavar="I", help="the entry's index in the log"
    )
    p.add_argument("--proof", required=True, metavar="PROOF_FILE", help="the inclusion proof JSON")
    p.add_argument("--json", action="store_true", help="print one JSON document (iot-attest-check/v1)")

    p = command(
        "consistency",
        "verify that a checkpoint extends an older one",
        "Verify that the log of a newer checkpoint contains, unchanged, everything of an older one\n"
        "(nothing was removed or rewritten). The proof is the JSON the gateway serves at\n"
        '  GET /v1/log/proof/consistency?from=M&to=N   ->  {"from": M, "to": N, "hashes": [...]}\n'
        "where M and N are the two checkpoints' tree sizes.",
        "exit codes: 0 valid, 2 invalid (the log rewrote history, or a bad signature or proof),\n"
        "3 usage error.\n\n"
        "example:\n"
        "  python -m verifier consistency --log-key log-key.txt --old checkpoint-monday.txt \\\n"
        "      --new checkpoint-friday.txt --proof consistency.json",
    )
    p.add_argument("--log-key", required=True, metavar="KEY", help=KEY_HELP)
    p.add_argument("--old", required=True, metavar="OLD_CHECKPOINT", help="the older signed checkpoint note")
    p.add_argument("--new", required=True, metavar="NEW_CHECKPOINT", help="the newer signed checkpoint note")
    p.add_argument("--proof", required=True, metavar="PROOF_FILE", help="the consistency proof JSON")
    p.add_argument("--json", action="store_true", help="print one JSON document (iot-attest-check/v1)")

    follow_epilog = (
        "exit codes: 0 (--once) nothing wrong; 2 ALERT: the log forked, rolled back, showed two\n"
        "different trees of one size, or served a checkpoint with a bad signature (the evidence is\n"
        "saved in DIR/evidence/); 3 usage error; 4 (--once) the gateway could not be reached\n"
        "(otherwise network errors are logged and retried); 130 stopped with Ctrl-C.\n"
        "The first checkpoint seen is trusted as it is; keep DIR so later runs check against it."
    )
    p = command(
        "monitor",
        "follow a live log and alert if it rewrites history",
        "Follow a live log: fetch its latest checkpoint every --interval seconds, verify it with the\n"
        "log key and verify that it extends the last one accepted (consistency proof). Log lines go\n"
        "to stderr with UTC timestamps.",
        follow_epilog + "\n\nexample:\n  python -m verifier monitor --gateway https://gateway.example.com "
        "--log-key log-key.txt --state monitor-state",
    )
    _add_follow_options(p)

    p = command(
        "witness",
        "monitor a log and cosign its checkpoints",
        "A witness is a monitor that also cosigns (C2SP cosignature/v1) every checkpoint it verified as\n"
        "consistent with all before it, keeps the cosigned notes in DIR/cosigned/ and, with --submit,\n"
        "sends them to the gateway (POST /v1/log/cosignatures). Auditors can then require your\n"
        "cosignature with --witness-key. A witness never cosigns two inconsistent checkpoints.",
        follow_epilog
        + "\n\nexample:\n  python -m verifier witness-keygen --name witness.example.org --out witness.key\n"
        "  python -m verifier witness --gateway https://gateway.example.com --log-key log-key.txt \\\n"
        "      --state witness-state --witness-key-file witness.key --name witness.example.org --submit",
    )
    _add_follow_options(p)
    p.add_argument(
        "--witness-key-file",
        required=True,
        metavar="FILE",
        help="the witness's private key file, made by witness-keygen",
    )
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the witness's name; must be the one in the key file (default: that name)",
    )
    p.add_argument("--submit", action="store_true", help="send each cosigned checkpoint to the gateway")

    p = command(
        "witness-keygen",
        "create a witness signing key",
        "Create a new witness signing key. The private key is written to --out (readable by you only);\n"
        "the public witness key string <name>+<key id>+<key> is printed: publish it so that auditors\n"
        "can pass it to --witness-key.",
        "exit codes: 0 done, 3 usage error (e.g. the file exists: a key is never overwritten).\n\n"
        "example:\n  python -m verifier witness-keygen --name witness.example.org --out witness.key",
    )
    p.add_argument(
        "--name",
        required=True,
        metavar="NAME",
        help="the witness's name, e.g. a domain you control (no spaces or '+')",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the private key")
    return parser


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
        doc = valid_report(result, time.perf_counter() - started, log_key, info)
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
