"""Application errors: every rule a service enforces fails with one of these.

Each carries a stable ``code`` (for API problem bodies and tests) and the HTTP status
the faces map it to; ``fields`` holds per-field messages for validation failures.
"""


class ApplicationError(Exception):
    code = "application_error"
    status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidInput(ApplicationError):
    code = "invalid_input"
    status = 422


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status = 403


class TransitionNotAllowed(ApplicationError):
    code = "transition_not_allowed"
    status = 409


class ConcurrentUpdate(ApplicationError):
    """Someone else changed the record between our read and our write."""

    code = "concurrent_update"
    status = 409
