"""The one exception tree of hookcast.

::

    HookcastError
    ├── ValidationError        bad input: 400
    │   └── PayloadTooLargeError   413
    ├── AuthenticationError    no or wrong credential: 401
    ├── PermissionDeniedError  credential lacks a permission: 403
    ├── NotFoundError          no such resource (in this project): 404
    ├── ConflictError          state forbids the change (e.g. resend of a success): 400
    └── StoreError             the database failed: 5xx (a bug or an outage)
        └── LeaseLostError     a fenced completion lost its lease (worker-internal)
"""

from __future__ import annotations


class HookcastError(Exception):
    """Root of every hookcast error. ``message`` is safe to show to API callers."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(HookcastError):
    status_code = 400


class PayloadTooLargeError(ValidationError):
    status_code = 413


class AuthenticationError(HookcastError):
    status_code = 401


class PermissionDeniedError(HookcastError):
    status_code = 403


class NotFoundError(HookcastError):
    status_code = 404


class ConflictError(HookcastError):
    status_code = 400


class StoreError(HookcastError):
    status_code = 500


class LeaseLostError(StoreError):
    pass
