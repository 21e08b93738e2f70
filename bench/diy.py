"""The webhook task a Python team would write for the baselines (Celery, dramatiq).

One task per webhook: sign the body the Standard Webhooks way (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,base64(HMAC-SHA256(key, id.ts.body))``,
the same scheme hookcast uses and the receiver checks) and POST it with ``requests``.
A module-level ``requests.Session`` keeps connections alive per worker process: a little
faster than ``requests.post`` (a new connection per task), so the baseline is the better of
the two obvious ways to write it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import requests

_session = requests.Session()
_session.trust_env = False  # loopback only: never an HTTP proxy from the environment


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (base64 after the prefix)."""
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def deliver(url: str, body: str, secret: str) -> int:
    """Sign and POST one webhook; raises on a non-2xx answer (so the queue retries it)."""
    msg_id = "msg_" + uuid.uuid4().hex
    timestamp = int(time.time())
    response = _session.post(
        url,
        data=body.encode(),
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.status_code
