"""Standard Webhooks v1a (Ed25519): the spec's vector, and our headers verified with the
public key the API shows."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hookcast.domain.signing import (
    ed25519_public_key,
    generate_ed25519_secret,
    standard_webhooks_v1a,
)

# the v1a vector used by Svix's server tests and the spec's example
SECRET = (
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
)
PUBLIC = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="
SIGNATURE = (
    "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
)


def test_spec_vector() -> None:
    got = standard_webhooks_v1a(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}', SECRET
    )
    assert got == SIGNATURE
    assert ed25519_public_key(SECRET) == PUBLIC


def test_generated_keys_verify_with_their_public_key() -> None:
    counter = iter(range(256))
    secret = generate_ed25519_secret(lambda n: bytes(next(counter) for _ in range(n)))
    sig = standard_webhooks_v1a("m1", 1700000000, b"{}", secret)
    public = base64.b64decode(ed25519_public_key(secret).removeprefix("whpk_"))
    Ed25519PublicKey.from_public_bytes(public).verify(
        base64.b64decode(sig.removeprefix("v1a,")), b"m1.1700000000.{}"
    )
