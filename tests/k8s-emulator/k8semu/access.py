"""
Answers to `SelfSubjectAccessReview`: "may I do this?".

kmock would store the review like any object and echo it back without a
`status`, so a tool checking its own permissions could not tell yes from no.
The answer here follows a rule list set by the fixture or a test: the first
rule that matches decides, otherwise the default (allow everything unless told
otherwise). Rules use RBAC's conventions: "*" matches anything, a resource
"pods" does not cover the subresource "pods/log".
"""
import dataclasses
from collections.abc import Mapping
from typing import Any

from .errors import bad_request


def _words(value: Any, default: list[str]) -> list[str]:
    if value is None:
        return default
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


@dataclasses.dataclass
class AccessRule:
    verbs: list[str]
    resources: list[str]
    groups: list[str]
    namespaces: list[str]
    names: list[str]
    non_resource_urls: list[str]
    allowed: bool

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> 'AccessRule':
        if not isinstance(data, Mapping):
            raise bad_request(f'an access rule must be an object, got {data!r}')
        return cls(verbs=_words(data.get('verbs'), ['*']),
                   resources=_words(data.get('resources'), ['*']),
                   groups=_words(data.get('groups', data.get('apiGroups')), ['*']),
                   namespaces=_words(data.get('namespaces'), ['*']),
                   names=_words(data.get('names', data.get('resourceNames')), ['*']),
                   non_resource_urls=_words(data.get('nonResourceURLs'), []),
                   allowed=bool(data.get('allowed', True)))

    def as_dict(self) -> dict[str, Any]:
        return {'verbs': self.verbs, 'resources': self.resources, 'groups': self.groups,
                'namespaces': self.namespaces, 'names': self.names,
                'nonResourceURLs': self.non_resource_urls, 'allowed': self.allowed}

    def matches(self, attrs: Mapping[str, Any], non_resource: bool) -> bool:
        verb = attrs.get('verb') or ''
        if '*' not in self.verbs and verb not in self.verbs:
            return False
        if non_resource:
            path = attrs.get('path') or ''
            return any(u == '*' or u == path or (u.endswith('*') and path.startswith(u[:-1]))
                       for u in self.non_resource_urls)
        if self.non_resource_urls and self.resources == ['*']:
            return False  # a rule about URLs says nothing about resources
        resource = attrs.get('resource') or ''
        if attrs.get('subresource'):
            resource = f"{resource}/{attrs['subresource']}"
        if '*' not in self.resources and resource not in self.resources:
            return False
        if '*' not in self.groups and (attrs.get('group') or '') not in self.groups:
            return False
        if '*' not in self.namespaces and (attrs.get('namespace') or '') not in self.namespaces:
            return False
        name = attrs.get('name') or ''
        if '*' not in self.names and name and name not in self.names:
            return False
        return True


@dataclasses.dataclass
class AccessPolicy:
    default_allowed: bool = True
    rules: list[AccessRule] = dataclasses.field(default_factory=list)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> 'AccessPolicy':
        spec = data.get('spec', data) if isinstance(data, Mapping) else {}
        default = spec.get('default', 'allow')
        if isinstance(default, str):
            default_allowed = default.lower() in ('allow', 'allowed', 'true', 'yes')
        else:
            default_allowed = bool(default)
        return cls(default_allowed=default_allowed,
                   rules=[AccessRule.parse(r) for r in spec.get('rules') or []])

    def as_dict(self) -> dict[str, Any]:
        return {'default': 'allow' if self.default_allowed else 'deny',
                'rules': [r.as_dict() for r in self.rules]}

    def review(self, review: Mapping[str, Any]) -> dict[str, Any]:
        """Fill the `status` of a SelfSubjectAccessReview."""
        spec = review.get('spec') or {}
        non_resource = 'nonResourceAttributes' in spec and 'resourceAttributes' not in spec
        attrs = spec.get('nonResourceAttributes' if non_resource else 'resourceAttributes') or {}
        for rule in self.rules:
            if rule.matches(attrs, non_resource):
                if rule.allowed:
                    return {'allowed': True, 'reason': 'allowed by the emulator access rules'}
                return {'allowed': False, 'denied': True, 'reason': 'denied by the emulator access rules'}
        if self.default_allowed:
            return {'allowed': True, 'reason': 'allowed by default'}
        return {'allowed': False, 'reason': 'no rule allows this'}
