"""
The four patch flavours of the Kubernetes API.

kmock merges every PATCH body into the object recursively and replaces lists
wholesale, whatever the Content-Type says. For a strategic-merge patch that
adds one env var or changes one container's image, a real server merges list
items by key; replacing the list silently drops the other containers, mounts
and variables. JSON patches (RFC 6902) are not understood at all.
"""
import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from .errors import ApiError, bad_request

JSON_PATCH = 'application/json-patch+json'
MERGE_PATCH = 'application/merge-patch+json'
STRATEGIC_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

# List fields merged item by item, keyed by one field of the items (the
# `patchMergeKey` of the Kubernetes Go types). Any other list is replaced.
# `ports` depends on where it is: containers key on containerPort, services
# on port; see _merge_key().
MERGE_KEYS: dict[str, str] = {
    'containers': 'name',
    'initContainers': 'name',
    'ephemeralContainers': 'name',
    'volumes': 'name',
    'env': 'name',
    'volumeMounts': 'mountPath',
    'volumeDevices': 'devicePath',
    'imagePullSecrets': 'name',
    'hostAliases': 'ip',
    'conditions': 'type',
    'ownerReferences': 'uid',
    'topologySpreadConstraints': 'topologyKey',
    'resourceClaims': 'name',
}
# Lists of scalars merged as sets (`patchStrategy:"merge"` on a []string).
MERGED_SCALAR_LISTS = {'finalizers'}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 operations; a failing `test` or a bad path is a 422 like on a real server."""
    if not isinstance(operations, list):
        raise bad_request('json patch must be a list of operations')
    try:
        return jsonpatch.JsonPatch(operations).apply(copy.deepcopy(target))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise ApiError('Invalid', f'the server rejected our request due to an error in our request: {exc}')


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == 'ports':
        sample = [item for item in items if isinstance(item, Mapping)]
        if any('containerPort' in item for item in sample):
            return 'containerPort'
        if any('port' in item for item in sample):
            return 'port'
        return 'name'
    return MERGE_KEYS.get(field)


def _strip_directives(value: Any) -> Any:
    """Drop `$patch`/`$setElementOrder`/`$retainKeys` markers from values being inserted."""
    if isinstance(value, Mapping):
        return {k: _strip_directives(v) for k, v in value.items()
                if not k.startswith('$setElementOrder/') and k not in ('$patch', '$retainKeys')
                and not k.startswith('$deleteFromPrimitiveList/')}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value
                if not (isinstance(v, Mapping) and v.get('$patch') in ('replace', 'delete') and len(v) == 1)]
    return value


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    current = list(current) if isinstance(current, list) else []
    # A bare {"$patch": "replace"} element means: the list is exactly the other elements.
    if any(isinstance(item, Mapping) and item.get('$patch') == 'replace' for item in patch):
        return _strip_directives([item for item in patch
                                  if not (isinstance(item, Mapping) and item.get('$patch') == 'replace')])
    if field in MERGED_SCALAR_LISTS:
        merged = list(current)
        merged += [item for item in patch if item not in merged]
        return merged
    key = _merge_key(field, current + patch)
    if key is None or not all(isinstance(item, Mapping) for item in patch):
        return _strip_directives(patch)
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        wanted = item.get(key)
        index = next((i for i, old in enumerate(merged)
                      if isinstance(old, Mapping) and old.get(key) == wanted), None)
        if item.get('$patch') == 'delete':
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(_strip_directives(item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic-merge patch: like RFC 7386, but known lists merge by key."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        return _strip_directives({k: v for k, v in patch.items() if k != '$patch'})
    if patch.get('$patch') == 'delete':
        return None
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key in ('$patch', '$retainKeys') or key.startswith('$setElementOrder/'):
            continue
        if key.startswith('$deleteFromPrimitiveList/'):
            field = key.split('/', 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, Mapping):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    return result


def apply_patch(content_type: str, target: Any, patch: Any) -> Any:
    """Dispatch on the PATCH Content-Type (parameters such as charset ignored)."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, Mapping):
        raise bad_request('the patch body must be a JSON object')
    if content_type == MERGE_PATCH:
        return merge_patch(target, patch)
    # Server-side apply has no field ownership here: the applied configuration
    # is merged like a strategic patch, which gives the same object as long as
    # a single manager applies (the case tests exercise).
    return strategic_merge(target, patch)
