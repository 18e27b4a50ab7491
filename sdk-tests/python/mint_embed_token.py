"""Mints a Keyhole embed token ("Keyhole embed token v1", see docs/keys.md) the way a SaaS backend would,
with the `cryptography` package: a JWT signed with EdDSA/Ed25519 whose key seed is
SHA-256("keyhole-embed-token-v1:" + access key secret).

Usage: python3 mint_embed_token.py <access key secret> '<claims JSON>'   -> prints the token.
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_embed_token(access_key: str, claims: dict) -> str:
    seed = hashlib.sha256(b"keyhole-embed-token-v1:" + access_key.encode()).digest()
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    public_key = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    header = {"alg": "EdDSA", "typ": "JWT", "kid": b64url(public_key)}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing_input + "." + b64url(private_key.sign(signing_input.encode()))


if __name__ == "__main__":
    print(mint_embed_token(sys.argv[1], json.loads(sys.argv[2])), end="")
