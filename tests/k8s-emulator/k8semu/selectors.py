"""
Label and field selectors, as the API server parses and applies them.

kmock ignores `labelSelector` and `fieldSelector` entirely, so every list and
watch returns everything; a tool that selects pods by `app=...` then acts on
objects it never meant to touch.
"""
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import bad_request

Matcher = Callable[[Mapping[str, Any]], bool]

_KEY = r'[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?'
_VALUE = r'(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?'
_SET_RE = re.compile(rf'^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$')
_CMP_RE = re.compile(rf'^\s*({_KEY})\s*(==|!=|=|>|<)\s*({_VALUE})\s*$')
_EXISTS_RE = re.compile(rf'^\s*(!?)\s*({_KEY})\s*$')


def _split_requirements(text: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)` parentheses."""
    parts, depth, current = [], 0, ''
    for char in text:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _label_requirement(text: str) -> Matcher:
    if match := _SET_RE.match(text):
        key, op, raw_values = match.groups()
        values = {v.strip() for v in raw_values.split(',') if v.strip()}
        if not values:
            raise bad_request(f'unable to parse requirement: for \'{op}\' operator, values set can\'t be empty')
        if op == 'in':
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _CMP_RE.match(text):
        key, op, value = match.groups()
        if op in ('=', '=='):
            return lambda labels: key in labels and labels[key] == value
        if op == '!=':
            return lambda labels: labels.get(key) != value
        try:
            number = int(value)
        except ValueError:
            raise bad_request(f'unable to parse requirement: for \'{op}\' operator, the value must be an integer')

        def compare(labels: Mapping[str, Any]) -> bool:
            try:
                actual = int(labels[key])
            except (KeyError, ValueError):
                return False
            return actual > number if op == '>' else actual < number
        return compare
    if match := _EXISTS_RE.match(text):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f'unable to parse requirement: {text.strip()!r} is not a valid label selector requirement')


def label_matcher(selector: str | None) -> Matcher:
    """A predicate over an object's labels for a `labelSelector` string."""
    if not selector or not selector.strip():
        return lambda labels: True
    requirements = [_label_requirement(part) for part in _split_requirements(selector)]
    return lambda labels: all(req(labels or {}) for req in requirements)


def match_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, Any]) -> bool:
    """Apply a structured `LabelSelector` (matchLabels/matchExpressions) to labels."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), set(expr.get('values') or [])
        if op == 'In' and labels.get(key) not in values:
            return False
        if op == 'NotIn' and key in labels and labels[key] in values:
            return False
        if op == 'Exists' and key not in labels:
            return False
        if op == 'DoesNotExist' and key in labels:
            return False
    return True


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """Render a structured `LabelSelector` the way `Scale.status.selector` shows it."""
    if not selector:
        return ''
    parts = [f'{k}={v}' for k, v in sorted((selector.get('matchLabels') or {}).items())]
    for expr in selector.get('matchExpressions') or []:
        op, key = expr.get('operator'), expr.get('key')
        values = ','.join(sorted(expr.get('values') or []))
        parts.append({'In': f'{key} in ({values})', 'NotIn': f'{key} notin ({values})',
                      'Exists': key, 'DoesNotExist': f'!{key}'}.get(op, key))
    return ','.join(parts)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split('.'):
        if not isinstance(value, Mapping):
            return ''
        value = value.get(part)
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def field_matcher(selector: str | None, allowed: tuple[str, ...]) -> Matcher:
    """A predicate over whole objects for a `fieldSelector` string."""
    if not selector or not selector.strip():
        return lambda obj: True
    known = ('metadata.name', 'metadata.namespace') + tuple(allowed)
    requirements: list[Matcher] = []
    for part in selector.split(','):
        if not part.strip():
            continue
        match = re.match(r'^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$', part)
        if not match:
            raise bad_request(f'invalid selector: \'{selector}\'; can\'t understand \'{part}\'')
        field, op, value = match.groups()
        if field not in known:
            raise bad_request(f'field label not supported: {field}')

        def requirement(obj: Mapping[str, Any], field: str = field, op: str = op, value: str = value) -> bool:
            actual = _field_value(obj, field)
            return actual != value if op == '!=' else actual == value
        requirements.append(requirement)
    return lambda obj: all(req(obj) for req in requirements)
