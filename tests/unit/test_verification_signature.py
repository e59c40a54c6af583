"""Signer recovery: EIP-191 over the 32 raw bytes of content_hash (ethers verifyMessage)."""
import json
import os
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.backends import CoinCurveECCBackend

from chalicelib.errors import PermanentError
from chalicelib.verification.signature import recover_signer

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "vectors"
MANIFEST = json.loads((VECTORS / "base-sepolia-manifest.json").read_text())


def test_real_vector_recovers_the_creator():
    assert recover_signer(MANIFEST["content_hash"], MANIFEST["signature"]) == \
        "0xA11B0dC0ef5E51b47368a9AF802d97201C0c6F52"


def test_fresh_key_round_trip():
    account = Account.create()
    content_hash = "0x" + os.urandom(32).hex()
    signed = account.sign_message(encode_defunct(primitive=bytes.fromhex(content_hash[2:])))
    signature = "0x" + bytes(signed.signature).hex()
    assert recover_signer(content_hash, signature) == account.address
    # Upper-case hex is the same bytes.
    assert recover_signer(content_hash.upper().replace("0X", "0x"), signature.upper().replace("0X", "0x")) == account.address


def test_payload_is_the_raw_bytes_not_the_hex_text():
    account = Account.create()
    content_hash = "0x" + os.urandom(32).hex()
    # Signing the 66-character hex string is a different message, so a different signer.
    signed_text = account.sign_message(encode_defunct(text=content_hash))
    assert recover_signer(content_hash, "0x" + bytes(signed_text.signature).hex()) != account.address


def test_v_as_0_or_1_is_accepted():
    sig = bytes.fromhex(MANIFEST["signature"][2:])
    low_v = "0x" + (sig[:64] + bytes([sig[64] - 27])).hex()
    assert recover_signer(MANIFEST["content_hash"], low_v) == "0xA11B0dC0ef5E51b47368a9AF802d97201C0c6F52"


@pytest.mark.parametrize("signature", [
    "0x" + "00" * 65,  # r = s = 0
    "0x" + "ab" * 64 + "1d",  # v = 29
    "0x" + "ff" * 65,  # r, s beyond the curve order
])
def test_unrecoverable_signatures(signature):
    with pytest.raises(PermanentError) as info:
        recover_signer(MANIFEST["content_hash"], signature)
    assert info.value.code == "SIGNATURE_INVALID"


@pytest.mark.parametrize("content_hash,signature", [
    ("0x1234", MANIFEST["signature"]),
    (MANIFEST["content_hash"], "0x1234"),
    (MANIFEST["content_hash"], None),
    (MANIFEST["content_hash"], MANIFEST["signature"][2:]),
])
def test_malformed_inputs(content_hash, signature):
    with pytest.raises(PermanentError) as info:
        recover_signer(content_hash, signature)
    assert info.value.code == "SIGNATURE_INVALID"


def test_recovery_runs_on_libsecp256k1(monkeypatch):
    """coincurve is in requirements.txt so that eth_keys recovers on libsecp256k1, not on its
    pure-Python backend (about 35 times slower): the recovery must go through coincurve."""
    recoveries = []
    original = CoinCurveECCBackend.ecdsa_recover

    def counted(self, *args, **kwargs):
        recoveries.append(type(self).__name__)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(CoinCurveECCBackend, "ecdsa_recover", counted)
    assert recover_signer(MANIFEST["content_hash"], MANIFEST["signature"]) == \
        "0xA11B0dC0ef5E51b47368a9AF802d97201C0c6F52"
    assert recoveries == ["CoinCurveECCBackend"]
