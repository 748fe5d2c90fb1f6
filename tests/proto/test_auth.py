"""The authentication step: HMAC-SHA256 challenge-response, alone and in a session."""

from __future__ import annotations

import hashlib
import hmac

from netlab.proto.auth import AUTH_CONTEXT, answer_challenge, new_challenge, verify_answer
from netlab.proto.codec import NONCE_SIZE
from netlab.proto.messages import Authenticate, AuthOk, Challenge, Error, ErrorCode, Exit, Request
from netlab.proto.session import State
from netlab.testing.protocol import DuplexPipe

TOKEN = b"s3cret"
NONCE_00_TO_1F = bytes(range(32))
# HMAC-SHA256(key=b"s3cret", msg=b"netlab-auth-v1\0" + bytes(range(32))), computed with
# `openssl dgst -sha256 -hmac s3cret`: the value docs/protocol.md shows.
KNOWN_ANSWER = bytes.fromhex("dae56ac710e9998fadcbc32dffd5729b75ed2574784149dcac7757ed0ca6fab2")


def test_known_answer_for_the_documented_token_and_nonce() -> None:
    assert answer_challenge(TOKEN, Challenge(NONCE_00_TO_1F)) == Authenticate(KNOWN_ANSWER)


def test_the_answer_is_the_hmac_of_context_and_nonce() -> None:
    challenge = new_challenge()
    expected = hmac.new(TOKEN, b"netlab-auth-v1\x00" + challenge.nonce, hashlib.sha256).digest()
    assert AUTH_CONTEXT == b"netlab-auth-v1\x00"
    assert answer_challenge(TOKEN, challenge).mac == expected


def test_a_fresh_challenge_holds_a_new_32_byte_nonce() -> None:
    nonces = {new_challenge().nonce for _ in range(8)}
    assert len(nonces) == 8
    assert all(len(nonce) == NONCE_SIZE == 32 for nonce in nonces)


def test_answer_and_verify_round_trip() -> None:
    challenge = new_challenge()
    assert verify_answer(TOKEN, challenge, answer_challenge(TOKEN, challenge))


def test_a_wrong_token_fails() -> None:
    challenge = new_challenge()
    assert not verify_answer(TOKEN, challenge, answer_challenge(b"s3creT", challenge))
    assert not verify_answer(b"", challenge, answer_challenge(TOKEN, challenge))


def test_different_nonces_give_different_answers() -> None:
    first, second = Challenge(NONCE_00_TO_1F), Challenge(bytes(range(1, 33)))
    assert answer_challenge(TOKEN, first) != answer_challenge(TOKEN, second)
    # A recorded answer is useless against the next connection's nonce.
    assert not verify_answer(TOKEN, second, answer_challenge(TOKEN, first))


def test_malformed_answers_fail_without_raising() -> None:
    challenge = new_challenge()
    good = answer_challenge(TOKEN, challenge).mac
    for mac in (b"", good[:-1], good + b"\0", bytes(32)):
        assert not verify_answer(TOKEN, challenge, Authenticate(mac))


def test_authentication_through_a_pair_of_sessions() -> None:
    pipe = DuplexPipe.of_sessions("length", auth_required=True)
    challenge = new_challenge()
    pipe.send("S", challenge)
    (received_challenge,) = pipe.received["C"]
    pipe.send("C", answer_challenge(TOKEN, received_challenge))
    (answer,) = pipe.received["S"]
    assert verify_answer(TOKEN, challenge, answer)
    pipe.send("S", AuthOk())
    pipe.send("C", Request(1, ("true",), "true"))
    pipe.send("S", Exit(1, 0))
    assert pipe.client.authenticated and pipe.server.authenticated
    assert pipe.received["C"][-2:] == [AuthOk(), Exit(1, 0)]
    assert pipe.client.state is pipe.server.state is State.IDLE


def test_a_failed_authentication_closes_the_connection() -> None:
    pipe = DuplexPipe.of_sessions("length", auth_required=True)
    challenge = new_challenge()
    pipe.send("S", challenge)
    pipe.send("C", answer_challenge(b"guess", challenge))
    assert not verify_answer(TOKEN, challenge, pipe.received["S"][0])
    pipe.send("S", Error(0, ErrorCode.AUTH_FAILED, "wrong token"))
    assert pipe.received["C"][-1] == Error(0, ErrorCode.AUTH_FAILED, "wrong token")
    assert pipe.client.state is pipe.server.state is State.CLOSED
    assert not pipe.client.authenticated and not pipe.server.authenticated


def test_the_protocol_doc_shows_this_hmac_input_and_result(protocol_doc_text: str) -> None:
    def spaced(data: bytes) -> str:
        return " ".join(f"{byte:02x}" for byte in data)

    assert f"HMAC message = {spaced(AUTH_CONTEXT)} " in protocol_doc_text
    assert f"mac          = {spaced(KNOWN_ANSWER[:16])}\n" in protocol_doc_text
    assert f"               {spaced(KNOWN_ANSWER[16:])}\n" in protocol_doc_text
