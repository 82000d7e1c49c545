"""
Kubernetes `Status` errors.

kmock renders its errors as `Status` objects too, but with reasons of its own
("Object Not Found", "Object Already Exists") and a Python traceback in
`details`. Clients branch on the reason and code (kube-rs `get_opt` turns a
404/NotFound into `None`, `entry()` relies on AlreadyExists and Conflict), so
the reasons, codes and `details` here are the ones a real API server sends.
"""
from typing import Any

from .catalogue import ResourceType

# reason -> HTTP code, as in k8s.io/apimachinery/pkg/apis/meta/v1/types.go
CODES = {
    'BadRequest': 400,
    'Unauthorized': 401,
    'Forbidden': 403,
    'NotFound': 404,
    'MethodNotAllowed': 405,
    'NotAcceptable': 406,
    'AlreadyExists': 409,
    'Conflict': 409,
    'Gone': 410,
    'Expired': 410,
    'UnsupportedMediaType': 415,
    'Invalid': 422,
    'InternalError': 500,
}


class ApiError(Exception):
    """An error that is answered with a `Status` object and its HTTP code."""

    def __init__(self, reason: str, message: str, *, code: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code if code is not None else CODES[reason]
        self.details = details

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            'kind': 'Status',
            'apiVersion': 'v1',
            'metadata': {},
            'status': 'Failure',
            'message': self.message,
            'reason': self.reason,
            'code': self.code,
        }
        if self.details is not None:
            status['details'] = self.details
        return status


def _details(rt: ResourceType, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {'kind': rt.plural}
    if name:
        details['name'] = name
    if rt.group:
        details['group'] = rt.group
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError('NotFound', f'{rt.qualified} "{name}" not found', details=_details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError('AlreadyExists', f'{rt.qualified} "{name}" already exists',
                    details=_details(rt, name))


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or 'the object has been modified; please apply your changes to the latest version and try again'
    return ApiError('Conflict', f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
                    details=_details(rt, name))


def invalid(rt: ResourceType, name: str | None, field: str, why: str) -> ApiError:
    details = _details(rt, name)
    details['causes'] = [{'reason': 'FieldValueInvalid', 'message': why, 'field': field}]
    return ApiError('Invalid', f'{rt.kind} "{name or ""}" is invalid: {field}: {why}', details=details)


def bad_request(message: str) -> ApiError:
    return ApiError('BadRequest', message)


def method_not_allowed() -> ApiError:
    return ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource',
                    details={})


def no_such_path() -> ApiError:
    return ApiError('NotFound', 'the server could not find the requested resource', details={})


def success(rt: ResourceType, name: str, uid: str | None) -> dict[str, Any]:
    """The `Status` a real server answers an immediate DELETE with."""
    details = _details(rt, name)
    if uid:
        details['uid'] = uid
    return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success', 'details': details}
