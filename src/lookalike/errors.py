"""One exception family for everything a caller can get wrong.

Each error carries the HTTP status it maps to, so the API turns it into a 4xx/503 JSON answer in
one place (``api/errors.py``) and the CLI prints its message (``cli/common.py``). Code raises the
subclass that says what went wrong; it never passes a bare status number.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadImageError(LookalikeError):
    """The bytes are not an image we can decode (empty, not an image, truncated, corrupt)."""

    status = 422
    code = "bad_image"


class ImageTooLargeError(LookalikeError):
    """Too many bytes, pixels or frames: refused before full decoding."""

    status = 413
    code = "image_too_large"


class UnknownModelError(LookalikeError):
    status = 404
    code = "unknown_model"


class BadInputSizeError(LookalikeError):
    status = 422
    code = "bad_input_size"


class WeightsUnavailableError(LookalikeError):
    """The model exists but no pretrained weights could be found: we never serve random weights."""

    status = 503
    code = "weights_unavailable"


class ModelMisconfiguredError(LookalikeError):
    """A declared or configured model does not work as set up; the message names the setting (503: config,
    not the caller's input)."""

    status = 503
    code = "model_misconfigured"


class ExportFailedError(LookalikeError):
    """Turning a model into ONNX failed: a fault on the server's side, with the exporter's own words."""

    status = 500
    code = "export_failed"


class ModelDisabledError(LookalikeError):
    status = 403
    code = "model_disabled"


class BusyError(LookalikeError):
    """The inference queue is full: the client should retry after a moment."""

    status = 503
    code = "busy"


class NotFoundError(LookalikeError):
    status = 404
    code = "not_found"


class ConflictError(LookalikeError):
    status = 409
    code = "conflict"


class InvalidValueError(LookalikeError):
    """A parameter or setting has a value we cannot use; the message names it and the valid ones."""

    status = 422
    code = "invalid_value"


class DependencyMissingError(LookalikeError):
    """An optional feature needs a package (an extra) that is not installed; the message says which."""

    status = 503
    code = "dependency_missing"


class ServiceUnavailableError(LookalikeError):
    """Something we depend on at run time (a Ray cluster, a vector store) cannot be reached now."""

    status = 503
    code = "unavailable"


class UnauthorizedError(LookalikeError):
    status = 401
    code = "unauthorized"


class UnsupportedMediaError(LookalikeError):
    status = 415
    code = "unsupported_media_type"


class ConfigError(LookalikeError):
    """A setting, environment variable or config file is wrong; the message names it and the fix."""

    status = 500
    code = "bad_config"
