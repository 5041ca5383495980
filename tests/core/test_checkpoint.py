"""Tests of attest_core.checkpoint: C2SP tlog-checkpoint and tlog-cosignature."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from attest_core.checkpoint import (
    MAX_UINT63,
    Checkpoint,
    Cosignature,
    WitnessKey,
    add_signature_lines,
    cosign_checkpoint,
    cosignature_message,
    cosignature_timestamp,
    open_checkpoint,
    parse_checkpoint_body,
    sign_checkpoint,
)
from attest_core.errors import (
    AttestError,
    DecodeError,
    KeyFormatError,
    SignatureError,
    VerificationError,
)
from attest_core.keys import Ed25519Signer
from attest_core.note import NoteSignature, NoteSigner, VerifierKey, open_note, parse_note, sign_note

# --- Vectors -------------------------------------------------------------------------------------

# c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature: the example checkpoint, its witness
# cosignature line and the message that cosignature signs (the keys are not published).
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY + "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+"
    "zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5"
    "nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_COSIGNED_MESSAGE = b"cosignature/v1\ntime 1679315147\n" + SPEC_BODY.encode()

# transparency-dev/formats note_cosigv1_test.go: a cosignature and its timestamp; a witness key.
FORMATS_COSIGNATURE = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
)
FORMATS_WITNESS_KEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"

# The Go checksum database: a real signed checkpoint whose origin is not its key name.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
    "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n"
)

# --- Fixed keys ------------------------------------------------------------------------------------

ORIGIN = "example.com/log"
LOG = NoteSigner(ORIGIN, Ed25519Signer(bytes([7]) * 32))
LOG_KEY = LOG.verifier_key()
W_SIGNERS = [Ed25519Signer(bytes([0x40 + i]) * 32) for i in range(3)]
W_NAMES = [f"witness.example/w{i}" for i in range(3)]
W_KEYS = [WitnessKey.from_public_key(n, s.public_key) for n, s in zip(W_NAMES, W_SIGNERS, strict=True)]
ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# The last character before "=" carries 2 unused bits: setting one gives a non-canonical encoding.
NON_CANONICAL_ROOT_B64 = ROOT_B64[:-2] + _B64_ALPHABET[_B64_ALPHABET.index(ROOT_B64[-2]) ^ 1] + "="
URLSAFE_ROOT_B64 = base64.urlsafe_b64encode(b"\xff" * 32).decode()
CP = Checkpoint(ORIGIN, 12345, ROOT, time=1_700_000_000, extensions=("vendor ext",))


def cosign(index: int, checkpoint: Checkpoint = CP, time: int = 1_700_000_100) -> str:
    return cosign_checkpoint(checkpoint, W_NAMES[index], W_SIGNERS[index], time)


SIGNED = sign_checkpoint(CP, LOG)
COSIGNED = add_signature_lines(SIGNED, [cosign(0), cosign(1)])


def code_of(exc: pytest.ExceptionInfo[AttestError]) -> str:
    return exc.value.code


# ============================================================================================
# Checkpoint body
# ============================================================================================


class TestBody:
    def test_spec_example(self) -> None:
        cp = parse_checkpoint_body(SPEC_BODY)
        assert cp.origin == "example.com/behind-the-sofa"
        assert cp.size == 20852163
        assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
        assert cp.time is None
        assert cp.extensions == ()
        assert cp.body() == SPEC_BODY
        assert parse_checkpoint_body(SPEC_BODY.encode()) == cp

    def test_spec_note_parses(self) -> None:
        note = parse_note(SPEC_NOTE)
        assert parse_checkpoint_body(note.text).size == 20852163

    def test_body_format(self) -> None:
        assert CP.body() == f"{ORIGIN}\n12345\n{ROOT_B64}\ntime 1700000000\nvendor ext\n"
        assert Checkpoint(ORIGIN, 0, ROOT).body() == f"{ORIGIN}\n0\n{ROOT_B64}\n"

    @pytest.mark.parametrize(
        "cp",
        [
            CP,
            Checkpoint(ORIGIN, 0, bytes(32)),
            Checkpoint(ORIGIN, MAX_UINT63, ROOT, time=MAX_UINT63),
            Checkpoint(ORIGIN, 1, ROOT, time=0),
            Checkpoint(ORIGIN, 1, ROOT, extensions=("a", "time", "timestamp 5", " x ", "ünï — +")),
            Checkpoint("go.sum database tree", 7, ROOT),
        ],
    )
    def test_round_trip(self, cp: Checkpoint) -> None:
        assert parse_checkpoint_body(cp.body()) == cp
        assert parse_checkpoint_body(cp.body()).body() == cp.body()

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            (b"\xff\n1\n" + ROOT_B64.encode() + b"\n", "checkpoint_not_utf8"),
            ("log\ud800\n1\n" + ROOT_B64 + "\n", "checkpoint_not_utf8"),
            (f"{ORIGIN}\r\n1\n{ROOT_B64}\n", "checkpoint_control_char"),
            (f"{ORIGIN}\n1\r\n{ROOT_B64}\n", "checkpoint_control_char"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\next\twith tab\n", "checkpoint_control_char"),
            (f"{ORIGIN}\n1\n{ROOT_B64}", "checkpoint_no_final_newline"),
            ("", "checkpoint_no_final_newline"),
            (f"{ORIGIN}\n1\n", "checkpoint_too_few_lines"),
            ("\n", "checkpoint_too_few_lines"),
            (f"\n1\n{ROOT_B64}\n", "checkpoint_bad_origin"),
            (f" {ORIGIN}\n1\n{ROOT_B64}\n", "checkpoint_bad_origin"),
            (f"{ORIGIN} \n1\n{ROOT_B64}\n", "checkpoint_bad_origin"),
            (f"\u3000\n1\n{ROOT_B64}\n", "checkpoint_bad_origin"),
            (f"{ORIGIN}\n\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n01\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n00\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n-1\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n+1\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n1_000\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n 1\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n1 \n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n0x10\n{ROOT_B64}\n", "checkpoint_bad_size"),
            (f"{ORIGIN}\n١٢\n{ROOT_B64}\n", "checkpoint_bad_size"),  # Arabic-Indic digits
            (f"{ORIGIN}\n１\n{ROOT_B64}\n", "checkpoint_bad_size"),  # full-width digit
            (f"{ORIGIN}\n9223372036854775808\n{ROOT_B64}\n", "checkpoint_size_overflow"),
            (f"{ORIGIN}\n18446744073709551615\n{ROOT_B64}\n", "checkpoint_size_overflow"),
            (f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n", "checkpoint_size_overflow"),
            (f"{ORIGIN}\n1\n\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n{ROOT_B64[:-1]}\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n{NON_CANONICAL_ROOT_B64}\n", "checkpoint_bad_root_hash"),  # padding bits
            (f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n{base64.b64encode(ROOT + b'x').decode()}\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n{URLSAFE_ROOT_B64}\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n{ROOT.hex()}\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n {ROOT_B64}\n", "checkpoint_bad_root_hash"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\n\n", "checkpoint_empty_line"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\next\n\next\n", "checkpoint_empty_line"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime 01\n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime -1\n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime \n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime 1 \n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime  1\n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime 9223372036854775808\n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\nother\ntime 1\n", "checkpoint_bad_time"),
            (f"{ORIGIN}\n1\n{ROOT_B64}\ntime 1\ntime 1\n", "checkpoint_bad_time"),
        ],
    )
    def test_malformed(self, text: str | bytes, code: str) -> None:
        with pytest.raises(DecodeError) as exc:
            parse_checkpoint_body(text)
        assert code_of(exc) == code

    def test_constructor_checks(self) -> None:
        cases: list[tuple[dict[str, object], str]] = [
            ({"origin": ""}, "checkpoint_bad_origin"),
            ({"origin": " x"}, "checkpoint_bad_origin"),
            ({"origin": "a\nb"}, "checkpoint_bad_origin"),
            ({"size": -1}, "checkpoint_size_overflow"),
            ({"size": MAX_UINT63 + 1}, "checkpoint_size_overflow"),
            ({"root_hash": ROOT[:31]}, "checkpoint_bad_root_hash"),
            ({"time": -1}, "checkpoint_bad_time"),
            ({"time": 2**63}, "checkpoint_bad_time"),
            ({"extensions": ("",)}, "checkpoint_empty_line"),
            ({"extensions": ("a\nb",)}, "checkpoint_control_char"),
            ({"extensions": ("time 5",)}, "checkpoint_bad_time"),
        ]
        base: dict[str, object] = {"origin": ORIGIN, "size": 1, "root_hash": ROOT}
        for change, code in cases:
            with pytest.raises(DecodeError) as exc:
                Checkpoint(**{**base, **change})  # type: ignore[arg-type]
            assert code_of(exc) == code, change
        wrong_types: list[dict[str, object]] = [
            {"size": True},
            {"size": 1.0},
            {"root_hash": "x" * 32},
            {"extensions": ["a"]},
        ]
        for change in wrong_types:
            with pytest.raises(TypeError):
                Checkpoint(**{**base, **change})  # type: ignore[arg-type]


# ============================================================================================
# Log signature
# ============================================================================================


class TestSignOpen:
    def test_round_trip(self) -> None:
        signed = open_checkpoint(SIGNED, LOG_KEY)
        assert signed.checkpoint == CP
        assert signed.note_text == SIGNED
        assert signed.body == CP.body()
        assert signed.cosignatures == ()
        assert open_checkpoint(SIGNED.encode(), LOG_KEY).note_text == SIGNED

    def test_signed_note_is_a_plain_signed_note(self) -> None:
        assert open_note(SIGNED, [LOG_KEY]).text == CP.body()
        assert SIGNED.startswith(CP.body() + "\n— example.com/log ")

    def test_sign_refuses_origin_other_than_key_name(self) -> None:
        other = NoteSigner("example.com/other", Ed25519Signer(bytes([7]) * 32))
        with pytest.raises(AttestError) as exc:
            sign_checkpoint(CP, other)
        assert code_of(exc) == "checkpoint_origin_mismatch"

    def test_wrong_log_key(self) -> None:
        same_name = VerifierKey(ORIGIN, Ed25519Signer(bytes([8]) * 32).public_key)
        other_name = VerifierKey("example.com/other", LOG.public_key)
        for key in (same_name, other_name):
            with pytest.raises(VerificationError) as exc:
                open_checkpoint(SIGNED, key)
            assert code_of(exc) == "no_known_signature"

    def test_origin_mismatch(self) -> None:
        other = Checkpoint("example.com/other", 1, ROOT)
        note = sign_note(other.body(), LOG)  # signed by the log key, but for another origin
        with pytest.raises(VerificationError) as exc:
            open_checkpoint(note, LOG_KEY)
        assert code_of(exc) == "checkpoint_origin_mismatch"

    def test_sumdb_checkpoint_verifies_but_origin_is_not_key_name(self) -> None:
        key = VerifierKey.parse(SUMDB_VKEY)
        cp = parse_checkpoint_body(open_note(SUMDB_NOTE, [key]).text)
        assert (cp.origin, cp.size) == ("go.sum database tree", 65209736)
        with pytest.raises(VerificationError) as exc:
            open_checkpoint(SUMDB_NOTE, key)
        assert code_of(exc) == "checkpoint_origin_mismatch"

    def test_signed_text_that_is_not_a_checkpoint(self) -> None:
        note = sign_note(f"{ORIGIN}\n01\n{ROOT_B64}\n", LOG)
        with pytest.raises(DecodeError) as exc:
            open_checkpoint(note, LOG_KEY)
        assert code_of(exc) == "checkpoint_bad_size"

    def test_bad_log_signature(self) -> None:
        tampered = SIGNED.replace("12345", "12346")
        with pytest.raises(SignatureError) as exc:
            open_checkpoint(tampered, LOG_KEY)
        assert code_of(exc) == "bad_signature"

    def test_other_signatures_are_ignored(self) -> None:
        stranger = NoteSigner("example.com/stranger", Ed25519Signer(bytes([9]) * 32))
        note = add_signature_lines(SIGNED, [stranger.sign(CP.body()).to_line(), "— x AAAAAAAA\n"])
        assert open_checkpoint(note, LOG_KEY).checkpoint == CP

    def test_misuse(self) -> None:
        with pytest.raises(TypeError):
            open_checkpoint(SIGNED, W_KEYS[0])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            open_checkpoint(SIGNED, LOG_KEY, [LOG_KEY])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            open_checkpoint(SIGNED, LOG_KEY, W_KEYS[0])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="min_witnesses"):
            open_checkpoint(SIGNED, LOG_KEY, W_KEYS, min_witnesses=-1)
        with pytest.raises(ValueError, match="min_witnesses"):
            open_checkpoint(SIGNED, LOG_KEY, W_KEYS[:1], min_witnesses=2)
        with pytest.raises(TypeError):
            sign_checkpoint(CP.body(), LOG)  # type: ignore[arg-type]


# ============================================================================================
# Witness cosignatures
# ============================================================================================


class TestWitnessKey:
    def test_published_key(self) -> None:
        key = WitnessKey.parse(FORMATS_WITNESS_KEY)
        assert key.name == "remora.n621.de"
        assert key.key_id.hex() == "da77ade7"
        assert key.to_string() == FORMATS_WITNESS_KEY
        assert key.key_id == hashlib.sha256(b"remora.n621.de\n\x04" + key.public_key).digest()[:4]

    def test_round_trip_and_type_separation(self) -> None:
        key = W_KEYS[0]
        assert WitnessKey.parse(key.to_string()) == key
        assert key.to_string().split("+")[2].startswith("B")  # 0x04 type byte
        as_note_key = VerifierKey(key.name, key.public_key)
        witness_key: object = key
        assert as_note_key != witness_key
        assert as_note_key.key_id != key.key_id
        with pytest.raises(KeyFormatError) as exc:
            WitnessKey.parse(as_note_key.to_string())
        assert code_of(exc) == "bad_key_type"
        with pytest.raises(KeyFormatError) as exc:
            VerifierKey.parse(key.to_string())
        assert code_of(exc) == "bad_key_type"

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            ("remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "key_id_mismatch"),
            ("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw", "bad_key_string"),
            ("remora.n621.de+da77ade7", "bad_key_string"),
            ("remora n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "bad_key_name"),
        ],
    )
    def test_malformed(self, text: str, code: str) -> None:
        with pytest.raises(KeyFormatError) as exc:
            WitnessKey.parse(text)
        assert code_of(exc) == code


class TestCosignature:
    def test_spec_message(self) -> None:
        cp = parse_checkpoint_body(SPEC_BODY)
        sig = parse_note(SPEC_NOTE).signatures[1]
        assert cosignature_timestamp(sig) == 1679315147
        assert cosignature_message(cp, 1679315147) == SPEC_COSIGNED_MESSAGE

    def test_published_timestamp(self) -> None:
        sig = NoteSignature.parse_line(f"— w {FORMATS_COSIGNATURE}")
        assert cosignature_timestamp(sig) == 1727964367

    def test_timestamp_of_a_plain_signature_is_refused(self) -> None:
        sig = LOG.sign(CP.body())
        with pytest.raises(DecodeError) as exc:
            cosignature_timestamp(sig)
        assert code_of(exc) == "bad_cosignature"

    def test_line_format(self) -> None:
        line = cosign(0, time=1234)
        sig = NoteSignature.parse_line(line)
        assert sig.name == W_NAMES[0]
        assert sig.key_id == W_KEYS[0].key_id
        assert len(sig.signature) == 8 + 64
        assert sig.signature[:8] == (1234).to_bytes(8, "big")
        expected = W_SIGNERS[0].sign(b"cosignature/v1\ntime 1234\n" + CP.body().encode())
        assert sig.signature[8:] == expected

    def test_cosigned_round_trip(self) -> None:
        signed = open_checkpoint(COSIGNED, LOG_KEY, W_KEYS, min_witnesses=2)
        assert signed.checkpoint == CP
        assert signed.note_text == COSIGNED
        assert signed.witness_names == (W_NAMES[0], W_NAMES[1])
        first = signed.cosignatures[0]
        assert isinstance(first, Cosignature)
        assert first.time == 1_700_000_100
        assert first.witness == W_KEYS[0]
        assert first.to_line() == cosign(0)

    def test_cosignatures_of_untrusted_witnesses_are_ignored(self) -> None:
        signed = open_checkpoint(COSIGNED, LOG_KEY, [W_KEYS[1], W_KEYS[2]], min_witnesses=1)
        assert signed.witness_names == (W_NAMES[1],)
        assert open_checkpoint(COSIGNED, LOG_KEY).cosignatures == ()

    def test_not_enough_witnesses(self) -> None:
        with pytest.raises(VerificationError) as exc:
            open_checkpoint(COSIGNED, LOG_KEY, W_KEYS, min_witnesses=3)
        assert code_of(exc) == "not_enough_witnesses"
        with pytest.raises(VerificationError) as exc:
            open_checkpoint(SIGNED, LOG_KEY, W_KEYS, min_witnesses=1)
        assert code_of(exc) == "not_enough_witnesses"

    def test_a_witness_counts_once(self) -> None:
        note = add_signature_lines(SIGNED, [cosign(0, time=1), cosign(0, time=2)])
        signed = open_checkpoint(note, LOG_KEY, W_KEYS, min_witnesses=1)
        assert len(signed.cosignatures) == 1
        with pytest.raises(VerificationError) as exc:
            open_checkpoint(note, LOG_KEY, W_KEYS, min_witnesses=2)
        assert code_of(exc) == "not_enough_witnesses"

    def test_duplicate_witness_keys_count_once(self) -> None:
        with pytest.raises(ValueError, match="min_witnesses"):
            open_checkpoint(COSIGNED, LOG_KEY, [W_KEYS[0], W_KEYS[0]], min_witnesses=2)

    def _with_cosignature_bytes(self, raw: bytes) -> str:
        line = NoteSignature(W_NAMES[2], W_KEYS[2].key_id, raw).to_line()
        return add_signature_lines(COSIGNED, [line])

    def test_bad_cosignature_of_trusted_witness(self) -> None:
        good = NoteSignature.parse_line(cosign(2)).signature
        tampered_time = (1_700_000_101).to_bytes(8, "big") + good[8:]
        flipped = good[:-1] + bytes([good[-1] ^ 1])
        too_big = (2**63).to_bytes(8, "big") + good[8:]
        for raw in (tampered_time, flipped, too_big, good[:-1], good + b"x", good[8:]):
            with pytest.raises(SignatureError) as exc:
                open_checkpoint(self._with_cosignature_bytes(raw), LOG_KEY, W_KEYS)
            assert code_of(exc) == "bad_cosignature"
        # The same bytes from a witness nobody trusts are ignored.
        assert open_checkpoint(self._with_cosignature_bytes(flipped), LOG_KEY, W_KEYS[:2])

    def test_cosignature_of_another_checkpoint(self) -> None:
        other = Checkpoint(ORIGIN, 12346, ROOT, time=1_700_000_000, extensions=("vendor ext",))
        note = add_signature_lines(SIGNED, [cosign(0, checkpoint=other)])
        with pytest.raises(SignatureError):
            open_checkpoint(note, LOG_KEY, W_KEYS)

    def test_cosignature_covers_extension_lines(self) -> None:
        plain = Checkpoint(ORIGIN, 12345, ROOT, time=1_700_000_000)
        note = add_signature_lines(SIGNED, [cosign(0, checkpoint=plain)])
        with pytest.raises(SignatureError):
            open_checkpoint(note, LOG_KEY, W_KEYS)

    def test_log_signature_as_cosignature_is_refused(self) -> None:
        # A witness whose name is the log's cannot pass off the log signature as a cosignature.
        impostor = WitnessKey(ORIGIN, LOG.public_key)
        assert impostor.key_id != LOG_KEY.key_id
        with pytest.raises(VerificationError):
            open_checkpoint(SIGNED, LOG_KEY, [impostor], min_witnesses=1)

    def test_cosign_checks(self) -> None:
        with pytest.raises(DecodeError):
            cosign(0, time=-1)
        with pytest.raises(DecodeError):
            cosign(0, time=2**63)
        assert NoteSignature.parse_line(cosign(0, time=MAX_UINT63)).signature[:8] == MAX_UINT63.to_bytes(
            8, "big"
        )
        with pytest.raises(KeyFormatError):
            cosign_checkpoint(CP, "bad name", W_SIGNERS[0], 1)
        with pytest.raises(TypeError):
            cosign_checkpoint(CP, W_NAMES[0], b"key", 1)  # type: ignore[arg-type]

        class Broken:
            public_key = W_SIGNERS[0].public_key

            def sign(self, message: bytes) -> bytes:
                return bytes(64)

        with pytest.raises(SignatureError):
            cosign_checkpoint(CP, W_NAMES[0], Broken(), 1)


# ============================================================================================
# Property tests
# ============================================================================================


def test_every_deletion_insertion_and_substitution_is_rejected() -> None:
    """Exhaustive sweep over positions (the property test below samples characters too)."""
    rejected = 0
    for i in range(len(COSIGNED) + 1):
        variants = [COSIGNED[:i] + c + COSIGNED[i:] for c in ("\n", "A")]
        if i < len(COSIGNED):
            variants.append(COSIGNED[:i] + COSIGNED[i + 1 :])
            for c in ("A", "\n", " ", chr(ord(COSIGNED[i]) + 1)):
                if c != COSIGNED[i]:
                    variants.append(COSIGNED[:i] + c + COSIGNED[i + 1 :])
        for variant in variants:
            with pytest.raises(AttestError):
                open_checkpoint(variant, LOG_KEY, W_KEYS, min_witnesses=2)
            rejected += 1
    assert rejected > 6 * len(COSIGNED)


@settings(max_examples=400)
@given(
    st.integers(0, len(COSIGNED)),
    st.sampled_from(["replace", "delete", "insert"]),
    st.one_of(st.characters(), st.sampled_from(["\n", " ", "—", "+", "/", "=", "A", "0", "1"])),
)
def test_any_single_character_change_is_rejected(position: int, operation: str, char: str) -> None:
    if operation == "insert":
        mutated = COSIGNED[:position] + char + COSIGNED[position:]
    else:
        assume(position < len(COSIGNED))
        if operation == "replace":
            assume(char != COSIGNED[position])
            mutated = COSIGNED[:position] + char + COSIGNED[position + 1 :]
        else:
            mutated = COSIGNED[:position] + COSIGNED[position + 1 :]
    with pytest.raises(AttestError):
        open_checkpoint(mutated, LOG_KEY, W_KEYS, min_witnesses=2)


BODY_ALPHABET = st.sampled_from(
    ["\n", "0", "1", "9", " ", "A", "a", "=", "/", "+", "t", "i", "m", "e", "\r", "é"]
)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary(), st.text(BODY_ALPHABET)))
def test_parse_checkpoint_body_raises_only_decode_errors(data: str | bytes) -> None:
    try:
        cp = parse_checkpoint_body(data)
    except DecodeError:
        return
    text = data.decode() if isinstance(data, bytes) else data
    assert cp.body() == text


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from([ORIGIN, "12345", "0", "01", ROOT_B64, "time 5", "time 05", "x", ""]), max_size=6
    )
)
def test_parse_checkpoint_body_line_combinations(lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    try:
        cp = parse_checkpoint_body(text)
    except DecodeError:
        return
    assert cp.body() == text


@settings(max_examples=300)
@given(
    st.one_of(st.text(), st.from_regex(r"[a-z.]{1,8}\+[0-9a-f]{8}\+B[A-Za-z0-9+/=]{0,46}", fullmatch=True))
)
def test_witness_key_parse_raises_only_key_format_errors(text: str) -> None:
    try:
        key = WitnessKey.parse(text)
    except KeyFormatError:
        return
    assert key.to_string() == text


line_text = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20)


@settings(max_examples=100)
@given(
    origin=line_text.filter(lambda s: s == s.strip()),
    size=st.integers(0, MAX_UINT63),
    root=st.binary(min_size=32, max_size=32),
    time=st.none() | st.integers(0, MAX_UINT63),
    extensions=st.lists(line_text.filter(lambda s: not s.startswith("time ")), max_size=3),
)
def test_checkpoint_round_trip(
    origin: str, size: int, root: bytes, time: int | None, extensions: list[str]
) -> None:
    cp = Checkpoint(origin, size, root, time, tuple(extensions))
    assert parse_checkpoint_body(cp.body()) == cp
