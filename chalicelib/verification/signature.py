"""Who signed a manifest: the EIP-191 signer of the 32 raw bytes of its content_hash.

This is what ethers' `verifyMessage(getBytes(contentHash), signature)` computes, which is how
Internet ID creators sign their manifests.
"""
from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from ..errors import PermanentError
from ..vocabulary import HASH_RE, SIGNATURE_INVALID, SIGNATURE_RE


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, code=SIGNATURE_INVALID)


def recover_signer(content_hash_hex: str, signature_hex: str) -> str:
    """Return the checksummed address that signed `content_hash_hex`, or raise SIGNATURE_INVALID."""
    if not isinstance(content_hash_hex, str) or not HASH_RE.match(content_hash_hex):
        raise _invalid("The content hash must be 0x followed by 64 hex digits.")
    if not isinstance(signature_hex, str) or not SIGNATURE_RE.match(signature_hex):
        raise _invalid("The signature must be 0x followed by 130 hex digits (65 bytes).")
    message = encode_defunct(primitive=bytes.fromhex(content_hash_hex[2:]))
    try:
        signer = Account.recover_message(message, signature=bytes.fromhex(signature_hex[2:]))
    except Exception as exc:  # eth_keys BadSignature, ValueError for a bad v, ...
        raise _invalid(f"The manifest's signature cannot be recovered ({exc}).") from exc
    return to_checksum_address(signer)
