"""Tests of attest_core.note: C2SP signed notes and their key strings."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest_core.errors import (
    AttestError,
    DecodeError,
    KeyFormatError,
    SignatureError,
    VerificationError,
)
from attest_core.keys import Ed25519Signer
from attest_core.note import (
    MAX_SIGNATURES,
    Note,
    NoteKey,
    NoteSignature,
    NoteSigner,
    VerifierKey,
    add_signature_lines,
    b64decode_canonical,
    check_key_name,
    encode_private_key,
    generate_private_key,
    key_id_for,
    open_note,
    parse_note,
    sign_note,
)

# --- Published vectors of golang.org/x/mod/sumdb/note (note_test.go) -------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
PETER_NOTE = TEXT + "\n" + PETER_SIG

# --- The Go checksum database's public key and two of its signed tree heads ------------------

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTES = [
    "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
    "— sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n",
    "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
    "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
]

# --- The example of c2sp.org/signed-note (its key is not published) -----------------------------

C2SP_EXAMPLE = (
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n"
    "— quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)

ALICE = NoteSigner("example.com/alice", Ed25519Signer(bytes([1]) * 32))
BOB = NoteSigner("example.com/bob", Ed25519Signer(bytes([2]) * 32))


def peter() -> VerifierKey:
    return VerifierKey.parse(PETER_VKEY)


def enoch() -> VerifierKey:
    return VerifierKey.parse(ENOCH_VKEY)


def error_code(exc: pytest.ExceptionInfo[AttestError]) -> str:
    return exc.value.code


# ============================================================================================
# Key strings
# ============================================================================================


def go_manglings(key: str) -> Iterator[str]:
    """Every proper substring of ``key`` and every single-character increment of it."""
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                yield key[i:j]
    for i in range(len(key)):
        yield key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :]


class TestVerifierKey:
    def test_parse_go_vector(self) -> None:
        key = peter()
        assert key.name == "PeterNeumann"
        assert key.key_id == bytes.fromhex("c74f20a3")
        assert len(key.public_key) == 32
        assert key.to_string() == PETER_VKEY

    def test_key_base64_containing_plus_is_split_at_most_twice(self) -> None:
        key = VerifierKey.parse(SUMDB_VKEY)
        assert key.name == "sum.golang.org"
        assert key.key_id.hex() == "033de0ae"
        assert key.to_string() == SUMDB_VKEY

    def test_key_id_is_sha256_of_name_newline_type_key(self) -> None:
        key = peter()
        expected = hashlib.sha256(b"PeterNeumann\n\x01" + key.public_key).digest()[:4]
        assert key.key_id == expected == key_id_for("PeterNeumann", 0x01, key.public_key)

    def test_from_public_key_round_trip(self) -> None:
        key = VerifierKey.from_public_key("example.com/alice", ALICE.public_key)
        assert key == ALICE.verifier_key()
        assert VerifierKey.parse(key.to_string()) == key
        assert hash(VerifierKey.parse(key.to_string())) == hash(key)
        assert repr(key) == f"VerifierKey({key.to_string()!r})"

    def test_keys_with_another_name_differ(self) -> None:
        other = VerifierKey.from_public_key("example.com/other", ALICE.public_key)
        assert other != ALICE.verifier_key()
        assert other.key_id != ALICE.key_id

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            ("", "bad_key_string"),
            ("PeterNeumann", "bad_key_string"),
            ("PeterNeumann+c74f20a3", "bad_key_string"),
            ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_name"),
            ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_name"),
            ("Peter\u00a0Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_name"),
            ("Peter\x01+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_name"),
            ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_string"),
            ("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_string"),
            ("PeterNeumann+c74f20a3a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_string"),
            ("PeterNeumann+c74f20g3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_string"),
            ("PeterNeumann+c74f20a3+", "bad_key_string"),
            ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "bad_key_string"),
            ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW ", "bad_key_string"),
            ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n", "bad_key_string"),
            ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW", "bad_key_string"),
            # Go's vectors: wrong key length (with adjusted key hash), unknown type.
            ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", "bad_key_string"),
            ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "bad_key_type"),
            ("PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key_id_mismatch"),
            ("PeterNeuman+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key_id_mismatch"),
            # transparency-dev/formats vectors: too few parts, invalid base64, unknown algorithm.
            ("bananas.sigstore.dev+12344556", "bad_key_string"),
            ("rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!", "bad_key_string"),
            ("rekor.sigstore.dev+12345678+AwEB", "bad_key_type"),
            # A witness (type 0x04) key is not a note verifier key.
            ("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", "bad_key_type"),
            # A private key string is not a public one.
            (PETER_SKEY, "bad_key_string"),
        ],
    )
    def test_malformed(self, text: str, code: str) -> None:
        with pytest.raises(KeyFormatError) as exc:
            VerifierKey.parse(text)
        assert error_code(exc) == code

    def test_non_canonical_base64_is_rejected(self) -> None:
        assert b64decode_canonical("AAA=") == b"\x00\x00"
        for mangled in ("AAB=", "AB==", "AAA", "AAA==", " AAA=", "AAA=\n", "AA=A", "AAA=AAA=", "ÀAA="):
            assert b64decode_canonical(mangled) is None, mangled
        assert base64.b64decode("AAB=") == b"\x00\x00"  # Python accepts non-zero padding bits...
        material = b"\x01" + peter().public_key + b"\x00\x00"  # 35 bytes: 2 unused bits at the end
        encoded = base64.b64encode(material).decode()
        mangled = encoded[:-2] + chr(ord(encoded[-2]) + 1) + "="
        assert base64.b64decode(mangled) == material
        assert b64decode_canonical(mangled) is None  # ...we do not.
        name = "PeterNeumann"
        hex_id = key_id_for(name, 1, material[1:]).hex()
        with pytest.raises(KeyFormatError) as exc:
            VerifierKey.parse(f"{name}+{hex_id}+{mangled}")
        assert error_code(exc) == "bad_key_string"

    def test_go_manglings_are_rejected(self) -> None:
        # Every proper substring and every single-byte increment (sumdb/note TestNewVerifier).
        for mangled in go_manglings(PETER_VKEY):
            with pytest.raises(KeyFormatError):
                VerifierKey.parse(mangled)

    def test_constructor_checks(self) -> None:
        with pytest.raises(KeyFormatError) as exc:
            VerifierKey("bad name", ALICE.public_key)
        assert error_code(exc) == "bad_key_name"
        with pytest.raises(KeyFormatError):
            VerifierKey("ok", ALICE.public_key[:31])
        with pytest.raises(TypeError):
            VerifierKey("ok", "not bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            NoteKey("ok", ALICE.public_key)
        with pytest.raises(TypeError):
            VerifierKey.parse(PETER_VKEY.encode())  # type: ignore[arg-type]

    @pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\nb", "a\u2028b", "a\x7fb", "a\ud800b"])
    def test_bad_names(self, name: str) -> None:
        with pytest.raises(KeyFormatError) as exc:
            check_key_name(name)
        assert error_code(exc) == "bad_key_name"

    @pytest.mark.parametrize("name", ["a", "example.com/log", "PeterNeumann", "ünïcödé", "a—b", "oid/1.3.6"])
    def test_good_names(self, name: str) -> None:
        assert check_key_name(name) == name


class TestPrivateKey:
    def test_go_vector(self) -> None:
        signer = NoteSigner.from_private_key(PETER_SKEY)
        assert signer.name == "PeterNeumann"
        assert signer.key_id == bytes.fromhex("c74f20a3")
        assert signer.verifier_key() == peter()

    def test_encode_round_trip(self) -> None:
        seed = bytes(range(32))
        skey = encode_private_key("example.com/log", seed)
        assert skey.startswith("PRIVATE+KEY+example.com/log+")
        signer = NoteSigner.from_private_key(skey)
        assert signer.public_key == Ed25519Signer(seed).public_key

    def test_generate(self) -> None:
        skey = generate_private_key("example.com/log")
        signer = NoteSigner.from_private_key(skey)
        assert signer.name == "example.com/log"
        assert generate_private_key("example.com/log") != skey

    def test_go_manglings_are_rejected(self) -> None:
        for mangled in go_manglings(PETER_SKEY):
            with pytest.raises(KeyFormatError):
                NoteSigner.from_private_key(mangled)

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            (PETER_VKEY, "bad_key_string"),
            ("PRIVATE+KEY+PeterNeumann+c74f20a3", "bad_key_string"),
            (
                "PRIVATE+KEY+PeterNeumann+00000000+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
                "key_id_mismatch",
            ),
            (
                "PRIVATE+KEY+PeterNeumann+c74f20a3+BIEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
                "bad_key_type",
            ),
            (
                "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDE=",
                "bad_key_string",
            ),
            (
                "PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
                "bad_key_name",
            ),
        ],
    )
    def test_malformed(self, text: str, code: str) -> None:
        with pytest.raises(KeyFormatError) as exc:
            NoteSigner.from_private_key(text)
        assert error_code(exc) == code

    def test_errors_never_echo_the_secret(self) -> None:
        secret = PETER_SKEY.rsplit("+", 2)[-2:]
        for mangled in (PETER_SKEY[:-1], PETER_SKEY.replace("c74f20a3", "00000000"), PETER_SKEY + "x"):
            with pytest.raises(KeyFormatError) as exc:
                NoteSigner.from_private_key(mangled)
            for part in secret:
                assert part not in str(exc.value)
        assert "AYEK" not in repr(NoteSigner.from_private_key(PETER_SKEY))


# ============================================================================================
# Signing
# ============================================================================================


class TestSign:
    def test_go_vector(self) -> None:
        signer = NoteSigner.from_private_key(PETER_SKEY)
        assert sign_note(TEXT, signer) == PETER_NOTE

    def test_multiple_signers_in_order(self) -> None:
        note = sign_note(TEXT, ALICE, BOB)
        parsed = parse_note(note)
        assert [s.name for s in parsed.signatures] == ["example.com/alice", "example.com/bob"]
        opened = open_note(note, [BOB.verifier_key(), ALICE.verifier_key()])
        assert opened.verified_names == ("example.com/bob", "example.com/alice")

    def test_signature_covers_the_final_newline(self) -> None:
        sig = ALICE.sign("hello\n")
        assert sig.signature == Ed25519Signer(bytes([1]) * 32).sign(b"hello\n")

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            ("", "note_empty_text"),
            ("no newline", "note_no_final_newline"),
            ("carriage\r\n", "note_control_char"),
            ("tab\there\n", "note_control_char"),
            ("nul\x00\n", "note_control_char"),
            ("surrogate \ud800\n", "note_not_utf8"),
        ],
    )
    def test_bad_text(self, text: str, code: str) -> None:
        with pytest.raises(DecodeError) as exc:
            sign_note(text, ALICE)
        assert error_code(exc) == code

    def test_text_may_contain_blank_lines(self) -> None:
        for text in ("a\n\nb\n", "a\n\n", "\n", "a\n\n\n"):
            note = sign_note(text, ALICE)
            assert open_note(note, [ALICE.verifier_key()]).text == text

    def test_misuse(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            sign_note(TEXT)
        with pytest.raises(ValueError, match="twice"):
            sign_note(TEXT, ALICE, ALICE)
        with pytest.raises(TypeError):
            sign_note(TEXT, ALICE.verifier_key())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            NoteSigner("x", b"not a signer")  # type: ignore[arg-type]

    def test_faulty_signer_is_caught(self) -> None:
        class Broken:
            public_key = ALICE.public_key

            def sign(self, message: bytes) -> bytes:
                return bytes(64)

        with pytest.raises(SignatureError):
            sign_note(TEXT, NoteSigner("example.com/alice", Broken()))

        class Short(Broken):
            def sign(self, message: bytes) -> bytes:
                return b"short"

        with pytest.raises(SignatureError):
            sign_note(TEXT, NoteSigner("example.com/alice", Short()))


# ============================================================================================
# Parsing
# ============================================================================================


class TestParse:
    def test_go_vector(self) -> None:
        note = parse_note(PETER_NOTE)
        assert note.text == TEXT
        (sig,) = note.signatures
        assert sig.name == "PeterNeumann"
        assert sig.key_id == bytes.fromhex("c74f20a3")
        assert len(sig.signature) == 64
        assert note.to_string() == PETER_NOTE
        assert sig.to_line() == PETER_SIG

    def test_bytes_and_str_agree(self) -> None:
        assert parse_note(PETER_NOTE.encode()) == parse_note(PETER_NOTE)

    def test_c2sp_example(self) -> None:
        note = parse_note(C2SP_EXAMPLE)
        assert note.text.endswith("ed è subito sera.\n")
        assert "\n\n" in note.text  # the text's own blank line stays in the text
        assert note.signatures[0].name == "quasimodo.example/salvatore"
        assert note.to_string() == C2SP_EXAMPLE

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            # sumdb/note TestOpen's bad messages.
            (TEXT, "note_no_signatures"),
            (TEXT + "\n", "note_no_signatures"),
            (TEXT + "\n" + PETER_SIG[:-1], "note_no_final_newline"),
            ("\x01" + TEXT + "\n" + PETER_SIG, "note_control_char"),
            (b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), "note_not_utf8"),
            (TEXT + "\n" + "— Bad Name " + PETER_SIG.split(" ")[2], "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "note_bad_signature_line"),
            # Our own.
            ("", "note_no_signatures"),
            ("\n", "note_no_signatures"),
            (TEXT + "\n\n", "note_no_signatures"),
            (TEXT + "\n" + PETER_SIG + "\n", "note_no_signatures"),
            (TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG, "note_control_char"),
            (TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"), "note_control_char"),
            ("surrogate \udcff\n\n" + PETER_SIG, "note_not_utf8"),
            (b"caf\xc3\n\n" + PETER_SIG.encode(), "note_not_utf8"),
            (TEXT + "\n" + PETER_SIG.replace("—", "-"), "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG.replace("—", "–"), "note_bad_signature_line"),  # en dash
            (TEXT + "\n" + PETER_SIG.replace("— ", "—"), "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG.replace("— ", "—  "), "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG.replace(" x08", "  x08"), "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG.replace("\n", " \n"), "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG.replace("AM=", "AM"), "note_bad_signature_line"),  # no padding
            (TEXT + "\n" + PETER_SIG.replace("AM=", "AN="), "note_bad_signature_line"),  # padding bits
            (TEXT + "\n" + PETER_SIG.replace("x08go", "x08g_"), "note_bad_signature_line"),
            (TEXT + "\n" + "— PeterNeumann AAAAAA==\n", "note_bad_signature_line"),  # 4 bytes only
            (TEXT + "\n" + "— PeterNeumann \n", "note_bad_signature_line"),
            (TEXT + "\n" + "— Peter+Neumann AAAAAAA=\n", "note_bad_signature_line"),
            (TEXT + "\n" + "— \u3000 AAAAAAA=\n", "note_bad_signature_line"),
            (TEXT + "\n" + "—\n", "note_bad_signature_line"),
            (TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), "too_many_signatures"),
        ],
    )
    def test_malformed(self, data: str | bytes, code: str) -> None:
        with pytest.raises(DecodeError) as exc:
            parse_note(data)
        assert error_code(exc) == code
        with pytest.raises(DecodeError):
            open_note(data, [peter()])

    def test_too_many_signatures_even_without_known_keys(self) -> None:
        with pytest.raises(DecodeError) as exc:
            open_note(TEXT + "\n" + ENOCH_SIG * 101, [peter()])
        assert error_code(exc) == "too_many_signatures"

    def test_parse_line_accepts_missing_newline(self) -> None:
        assert NoteSignature.parse_line(PETER_SIG) == NoteSignature.parse_line(PETER_SIG[:-1])

    def test_note_constructor_checks(self) -> None:
        sig = NoteSignature.parse_line(PETER_SIG)
        with pytest.raises(DecodeError) as exc:
            Note(TEXT, ())
        assert error_code(exc) == "note_no_signatures"
        with pytest.raises(DecodeError):
            Note("no newline", (sig,))
        with pytest.raises(DecodeError) as exc:
            Note(TEXT, (sig,) * 101)
        assert error_code(exc) == "too_many_signatures"
        with pytest.raises(DecodeError):
            NoteSignature("a", b"abc", b"sig")
        with pytest.raises(DecodeError):
            NoteSignature("a", b"abcd", b"")
        with pytest.raises(KeyFormatError):
            NoteSignature("a b", b"abcd", b"s")


# ============================================================================================
# Opening (verification)
# ============================================================================================


class TestOpen:
    def test_sumdb_signed_tree_heads(self) -> None:
        for data in SUMDB_NOTES:
            opened = open_note(data, [VerifierKey.parse(SUMDB_VKEY)])
            assert opened.verified_names == ("sum.golang.org",)
            assert opened.text.startswith("go.sum database tree\n")

    def test_one_verified_one_ignored(self) -> None:
        opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter()])
        assert opened.text == TEXT
        assert opened.verified_keys == (peter(),)
        assert [s.name for s in opened.signatures] == ["PeterNeumann", "EnochRoot"]

    def test_both_verified(self) -> None:
        opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter(), enoch()])
        assert opened.verified_names == ("PeterNeumann", "EnochRoot")

    def test_no_known_signature(self) -> None:
        for verifiers in ([], [ALICE.verifier_key()]):
            with pytest.raises(VerificationError) as exc:
                open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, verifiers)
            assert error_code(exc) == "no_known_signature"
            assert not isinstance(exc.value, SignatureError)

    def test_duplicated_verifier_is_merged(self) -> None:
        opened = open_note(TEXT + "\n" + ENOCH_SIG, [enoch(), peter(), enoch()])
        assert opened.verified_names == ("EnochRoot",)

    def test_colliding_verifiers_are_refused(self) -> None:
        impostor = VerifierKey("PeterNeumann", ALICE.public_key)
        object.__setattr__(impostor, "key_id", peter().key_id)  # forge a name + key ID collision
        with pytest.raises(KeyFormatError) as exc:
            open_note(PETER_NOTE, [peter(), impostor])
        assert error_code(exc) == "ambiguous_key"

    def test_invalid_signature_of_known_key(self) -> None:
        bad = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
        with pytest.raises(SignatureError) as exc:
            open_note(bad, [peter()])
        assert error_code(exc) == "bad_signature"
        assert "PeterNeumann+c74f20a3" in str(exc.value)

    def test_bad_signature_of_known_key_rejects_even_if_another_verifies(self) -> None:
        bad_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
        with pytest.raises(SignatureError):
            open_note(TEXT + "\n" + PETER_SIG + bad_enoch, [peter(), enoch()])
        # ...but is ignored when Enoch is not trusted.
        assert open_note(TEXT + "\n" + PETER_SIG + bad_enoch, [peter()]).verified_names == ("PeterNeumann",)

    def test_duplicated_signatures(self) -> None:
        bad_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
        data = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + bad_enoch
        opened = open_note(data, [peter()])
        assert opened.verified_names == ("PeterNeumann",)
        assert len(opened.signatures) == 5

    def test_same_name_other_key_id_is_ignored(self) -> None:
        misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
        wrong_id = PETER_SIG.replace("x08g", "xxxx")
        for sig in (misnamed, wrong_id):
            with pytest.raises(VerificationError) as exc:
                open_note(TEXT + "\n" + sig, [peter()])
            assert error_code(exc) == "no_known_signature"

    def test_changed_text_fails(self) -> None:
        with pytest.raises(SignatureError):
            open_note(PETER_NOTE.replace("problem,", "problem;"), [peter()])

    def test_sixteen_signatures_accepted(self) -> None:
        signers = [NoteSigner(f"example.com/w{i}", Ed25519Signer(bytes([i + 10]) * 32)) for i in range(16)]
        note = sign_note(TEXT, *signers)
        opened = open_note(note, [s.verifier_key() for s in signers])
        assert len(opened.verified_keys) == 16

    def test_hundred_signatures_accepted(self) -> None:
        opened = open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [peter()])
        assert opened.verified_names == ("PeterNeumann",)

    def test_misuse(self) -> None:
        with pytest.raises(TypeError):
            open_note(PETER_NOTE, peter())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            open_note(PETER_NOTE, [PETER_VKEY])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            open_note(123, [peter()])  # type: ignore[arg-type]


class TestAddSignatureLines:
    def test_adds_and_dedupes(self) -> None:
        combined = add_signature_lines(PETER_NOTE, [ENOCH_SIG, ENOCH_SIG[:-1], PETER_SIG])
        assert combined == TEXT + "\n" + PETER_SIG + ENOCH_SIG
        assert open_note(combined, [peter(), enoch()]).verified_names == ("PeterNeumann", "EnochRoot")

    def test_rejects_bad_lines_and_overflow(self) -> None:
        with pytest.raises(DecodeError) as exc:
            add_signature_lines(PETER_NOTE, ["- PeterNeumann AAAAAAA="])
        assert error_code(exc) == "note_bad_signature_line"
        many = [ALICE.sign(TEXT).to_line()] + [
            NoteSignature(f"n{i}", bytes(4), b"x").to_line() for i in range(MAX_SIGNATURES)
        ]
        with pytest.raises(DecodeError) as exc:
            add_signature_lines(PETER_NOTE, many)
        assert error_code(exc) == "too_many_signatures"
        with pytest.raises(TypeError):
            add_signature_lines(PETER_NOTE, ENOCH_SIG)


# ============================================================================================
# Property tests
# ============================================================================================

NOTE_ALPHABET = st.sampled_from(
    ["—", " ", "\n", "+", "=", "/", "A", "a", "0", "9", "x", "é", "\r", "\x00", "\u2028", "\u00a0"]
)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(NOTE_ALPHABET), st.binary()))
def test_parse_note_raises_only_decode_errors(data: str | bytes) -> None:
    try:
        note = parse_note(data)
    except DecodeError:
        return
    assert parse_note(note.to_string()) == note


@settings(max_examples=300)
@given(st.integers(0, len(PETER_NOTE.encode()) - 1), st.integers(1, 255))
def test_any_byte_flip_is_rejected(position: int, flip: int) -> None:
    raw = bytearray(PETER_NOTE.encode())
    raw[position] ^= flip
    with pytest.raises(AttestError):
        open_note(bytes(raw), [peter()])


KEY_ALPHABET = st.sampled_from(["+", "=", "/", "A", "a", "c", "7", "0", "P", " ", "é", "\n"])


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(),
        st.text(KEY_ALPHABET),
        st.from_regex(r"[a-z]{1,5}\+[0-9a-f]{8}\+[A-Za-z0-9+/=]{0,48}", fullmatch=True),
    )
)
def test_key_parsers_raise_only_key_format_errors(text: str) -> None:
    for parse in (VerifierKey.parse, NoteSigner.from_private_key):
        with contextlib.suppress(KeyFormatError):
            parse(text)


@given(st.text(min_size=1).map(lambda s: s.replace("\r", "") + "\n"))
def test_sign_open_round_trip(text: str) -> None:
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        with pytest.raises(DecodeError, match="control character"):
            sign_note(text, ALICE)
        return
    note = sign_note(text, ALICE)
    opened = open_note(note, [ALICE.verifier_key(), BOB.verifier_key()])
    assert opened.text == text
    assert opened.verified_names == ("example.com/alice",)
