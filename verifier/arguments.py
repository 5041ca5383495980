"""The arguments of ``python -m verifier``: commands, options, help texts and their checks.

A usage error exits with code 3 (:class:`verifier.errors.UsageError`), never
argparse's 2, which means invalid evidence here.
"""

from __future__ import annotations

import argparse
import os
from typing import NoReturn

from verifier.errors import UsageError

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
        "     attest, or a plausibility check fails: see the fatal findings), or --require-full\n"
        "     is given and a device's evidence is boundary evidence\n"
        "  2  the evidence is invalid: a bad signature or proof, a tampered or unparsable bundle,\n"
        "     a log key that does not match\n"
        "  3  a usage error: a missing file, bad arguments, a malformed key string\n\n"
        "examples:\n"
        "  python -m verifier bundle bundle.json --log-key log-key.txt --html report.html\n"
        "  python -m verifier bundle bundle.json --log-key log-key.txt --jobs 0   # on every core\n"
        "  python -m verifier bundle bundle.json --log-key log-key.txt --require-full",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="the evidence bundle file (JSON)")
    p.add_argument("--log-key", required=True, metavar="KEY", help=KEY_HELP)
    p.add_argument(
        "--require-full",
        action="store_true",
        help="require full evidence (every reading from the one before the period to the one after it, per "
        "device): boundary evidence for any device, or a v1 bundle's device that does not show full evidence, "
        "makes the claim not backed (exit code 1)",
    )
    p.add_argument(
        "--require-meter-signed",
        action="store_true",
        help="require meter-signed evidence for chargers: a charger asset whose attested energy does not all "
        "lie between readings carrying valid meter-signed (OCMF) values makes the claim not backed (exit code 1)",
    )
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
    p.add_argument(
        "--claims",
        action="store_true",
        help="also read every entry (checked against each checkpoint's root) and alert when the same "
        "energy is claimed twice, a claim skips a live claim, or a claim is voided by another issuer; "
        "withdrawals and supersessions are logged",
    )

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
