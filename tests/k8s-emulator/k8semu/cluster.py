"""
A Kubernetes API emulator: kmock's `KubernetesEmulator` with the behaviour of
a real API server where kube-rs notices the difference.

What is kept from kmock: the HTTP server and request recording
(`kmock.Server`, `emulator.requests`), the object store with each object's
version history (`emulator.objects`), the resource registry and the shape of
its discovery documents (`emulator.resources`, `_serve_api*`), and its
`Status` error format. What is replaced, and why, is said where it happens;
README.md has the list.

kmock's own write path (`KubernetesEmulator._handle`) is bypassed: it mutates
the store before any validation (so a rejected or dry-run request would still
write), it mis-parses `/api/v1/namespaces/{name}` as a namespace with no
resource, and it has no PUT. The router below does the API server's work and
uses the same store.
"""
import asyncio
import base64
import bisect
import copy
import dataclasses
import datetime
import json
import random
import re
import sys
import traceback
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import kmock
import yaml

from . import catalogue, errors, patches, pods, selectors
from .access import AccessPolicy
from .catalogue import ResourceType
from .errors import ApiError, bad_request

EMULATOR_API = 'emulator/v1'   # apiVersion of the fixture documents that configure the emulator
SERVER_VERSION = {'major': '1', 'minor': '33', 'gitVersion': 'v1.33.4',
                  'gitCommit': '74cdb426ab7c3a2dcbd1eb4a6e1d5e2c3e1f2a3b',
                  'buildDate': '2025-08-12T18:17:09Z', 'goVersion': 'go1.24.5',
                  'emulationMajor': '1', 'emulationMinor': '33',
                  'minCompatibilityMajor': '1', 'minCompatibilityMinor': '32'}
AGGREGATED = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'
NAME_RE = re.compile(r'^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')
DEFAULT_WATCH_TIMEOUT = 1800.0
BASE_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get('metadata')
    return meta if isinstance(meta, dict) else {}


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that counts for `metadata.generation`: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}


@dataclasses.dataclass(frozen=True)
class Change:
    """One committed write, as watchers see it."""
    rv: int
    rt: ResourceType
    type: str                      # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None     # the state before, to send selector transitions


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed resource URL."""
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    startup_documents: list[dict[str, Any]] = attrs.field(factory=list)
    bookmark_interval: float = 5.0

    _rv: int = attrs.field(default=0, init=False)
    _changes: list[Change] = attrs.field(factory=list, init=False)
    _change_rvs: list[int] = attrs.field(factory=list, init=False)
    _changes_floor: int = attrs.field(default=0, init=False)   # watches from before this are 410 Gone
    _tick: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    scripts: pods.PodScripts = attrs.field(factory=pods.PodScripts, init=False)
    access: AccessPolicy = attrs.field(factory=AccessPolicy, init=False)
    exec_log: list[dict[str, Any]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Feed kmock's registry the real discovery facts instead of its guesses.
        for rt in catalogue.RESOURCE_TYPES:
            self.resources[kmock.resource(rt.group, rt.version, rt.plural)] = kmock.ResourceInfo(
                kind=rt.kind, singular=rt.singular, namespaced=rt.namespaced, verbs=rt.verbs,
                shortnames=rt.short_names, categories=rt.categories,
                subresources=[s.name for s in rt.subresources])
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self, *, empty: bool = False) -> None:
        """Forget everything; then recreate the base namespaces and the start-up fixtures."""
        self.objects.clear()
        self._changes.clear()
        self._change_rvs.clear()
        # The resourceVersion keeps counting up across resets, so that a watch
        # or list token from before the reset is recognisably stale (410):
        # its deletions were never sent as events.
        self._changes_floor = self._rv + 1
        self.scripts = pods.PodScripts()
        self.access = AccessPolicy()
        self.exec_log.clear()
        self._wake()
        for ns in BASE_NAMESPACES:
            self.load_documents([{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': ns}}])
        if not empty:
            self.load_documents(self.startup_documents)

    def close_streams(self) -> None:
        """End open watches now. aiohttp's shutdown would otherwise wait up
        to a minute for them, and a SIGTERM must stop the server promptly."""
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
        return kmock.resource(rt.group, rt.version, rt.plural), (namespace if rt.namespaced else None), name

    def _get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(rt, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def _all(self, rt: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        """Live objects of a type, in the order etcd would list them (namespace, name)."""
        wanted = kmock.resource(rt.group, rt.version, rt.plural)
        found = [(ns or '', name, obj) for (res, ns, name), obj in self.objects.items()
                 if res == wanted and not obj.deleted and (namespace is None or ns == namespace)]
        return [copy.deepcopy(obj.raw) for _, _, obj in sorted(found, key=lambda t: (t[0], t[1]))]

    def _commit(self, rt: ResourceType, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Store a new state (or a deletion), bump the resourceVersion, tell the watchers."""
        rv = self._next_rv()
        obj = _ordered(obj)
        obj.setdefault('metadata', {})['resourceVersion'] = str(rv)
        meta = obj['metadata']
        key = self._key(rt, meta.get('namespace'), meta['name'])
        if kind == 'DELETED':
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        self._changes.append(Change(rv, rt, kind, copy.deepcopy(obj), copy.deepcopy(old)))
        self._change_rvs.append(rv)
        self._wake()
        return obj

    # ------------------------------------------------------------- fixtures

    def load_documents(self, documents: Iterable[Any]) -> list[str]:
        """Upsert objects as they are (status included), and take emulator settings.

        Unlike an API create, a fixture keeps the given status, generation and
        uid (owner references must be able to point at a known uid), and missing
        namespaces are created rather than refused.
        """
        loaded: list[str] = []
        for doc in _flatten(documents):
            if not isinstance(doc, Mapping):
                raise bad_request(f'a fixture document must be an object, got {type(doc).__name__}')
            if doc.get('apiVersion') == EMULATOR_API:
                self._configure(doc)
                loaded.append(f"{doc.get('kind')}/{_meta(doc).get('name', '')}")
                continue
            rt = catalogue.by_kind(str(doc.get('apiVersion')), str(doc.get('kind')))
            if rt is None:
                raise bad_request(f"no resource for apiVersion {doc.get('apiVersion')!r} kind {doc.get('kind')!r}")
            obj = copy.deepcopy(dict(doc))
            meta = obj.setdefault('metadata', {})
            if not meta.get('name'):
                raise bad_request(f'a fixture {rt.kind} has no metadata.name')
            if rt.namespaced:
                meta.setdefault('namespace', 'default')
                ns_rt = catalogue.by_kind('v1', 'Namespace')
                if self._get(ns_rt, None, meta['namespace']) is None:
                    self.load_documents([{'apiVersion': 'v1', 'kind': 'Namespace',
                                          'metadata': {'name': meta['namespace']}}])
            else:
                meta.pop('namespace', None)
            meta.pop('resourceVersion', None)
            meta.setdefault('uid', str(uuid.uuid4()))
            meta.setdefault('creationTimestamp', now_rfc3339())
            meta.setdefault('generation', 1)
            _apply_defaults(rt, obj, keep_status=True)
            old = self._get(rt, meta.get('namespace'), meta['name'])
            self._commit(rt, 'MODIFIED' if old else 'ADDED', obj, old)
            loaded.append(f"{rt.kind}/{meta.get('namespace') + '/' if rt.namespaced else ''}{meta['name']}")
        return loaded

    def _configure(self, doc: Mapping[str, Any]) -> None:
        kind = doc.get('kind')
        if kind == 'PodBehavior':
            self.scripts.add(pods.PodBehavior.parse(doc))
        elif kind == 'AccessPolicy':
            self.access = AccessPolicy.parse(doc)
        else:
            raise bad_request(f'unknown {EMULATOR_API} kind {kind!r}: expected PodBehavior or AccessPolicy')

    # ---------------------------------------------------------------- router

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's request parser raises on `/api/v1/namespaces` (it expects a
        # name after "namespaces"), which makes listing namespaces a 500. The
        # request is then recorded without kmock's Kubernetes fields; the
        # router below parses the URL itself anyway.
        body = await raw_request.read()
        try:
            request = await kmock.Request._parse(raw_request, id=len(self._requests))
        except ValueError:
            request = kmock.Request(id=len(self._requests), raw_request=raw_request, url=raw_request.url,
                                    method=raw_request.method, params=dict(raw_request.query),
                                    headers=dict(raw_request.headers), body=body,
                                    text=body.decode(errors='replace'))
        self._requests.append(request)
        return await self._handle(request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        try:
            return await self._route(request, raw)
        except ApiError as exc:
            return _json(exc.status(), status=exc.code)
        except aiohttp.web.HTTPException as exc:  # e.g. a malformed WebSocket handshake
            reason = {400: 'BadRequest', 404: 'NotFound', 405: 'MethodNotAllowed'}.get(exc.status, 'InternalError')
            return _json(ApiError(reason, exc.reason or exc.text or '', code=exc.status).status(), status=exc.status)
        except Exception as exc:  # a bug here must still look like an API error to the client
            traceback.print_exc(file=sys.stderr)
            return _json(ApiError('InternalError', f'emulator failure: {exc!r}').status(), status=500)

    async def _route(self, request: kmock.Request, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw.path.rstrip('/') or '/'
        method = raw.method.upper()
        if path.startswith('/_emulator'):
            return await self._control(raw, path, method)
        if method == 'GET' and path in ('/healthz', '/readyz', '/livez'):
            return aiohttp.web.Response(text='ok')
        if method == 'GET' and path == '/version':
            return _json(await self._serve_server_version(request))
        if method == 'GET' and path == '/':
            return _json(await self._serve_root(request))
        parts = [p for p in path.split('/') if p]
        if not parts or parts[0] not in ('api', 'apis'):
            raise errors.no_such_path()
        # Discovery documents: /api, /api/v1, /apis, /apis/{group}, /apis/{group}/{version}
        depth = 2 if parts[0] == 'api' else 3
        if len(parts) <= depth:
            if method != 'GET':
                raise errors.method_not_allowed()
            return await self._discovery(request, raw, parts)
        target = self._parse_target(parts)
        return await self._dispatch(request, raw, method, target)

    def _parse_target(self, parts: list[str]) -> Target:
        if parts[0] == 'api':
            group, version, rest = '', parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace = None
        # /api/v1/namespaces/{ns}/{plural}/... is namespaced, but /api/v1/namespaces/{name}
        # and /api/v1/namespaces/{name}/status|finalize address the Namespace itself.
        if (rest[0] == 'namespaces' and len(rest) >= 3
                and not (group == '' and len(rest) == 3 and rest[2] in ('status', 'finalize'))):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.no_such_path()
        rt = catalogue.by_path(group, version, rest[0])
        if rt is None or (namespace is not None and not rt.namespaced):
            raise errors.no_such_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and rt.subresource(sub) is None:
            raise errors.no_such_path()
        return Target(rt, namespace, name, sub)

    async def _dispatch(self, request: kmock.Request, raw: aiohttp.web.BaseRequest,
                        method: str, t: Target) -> aiohttp.web.StreamResponse:
        query = raw.query
        accept = raw.headers.get('Accept', '')
        watching = method == 'GET' and query.get('watch') in ('true', '1')
        verb = {'GET': 'watch' if watching else ('get' if t.name else 'list'),
                'POST': 'create', 'PUT': 'update', 'PATCH': 'patch',
                'DELETE': 'delete' if t.name else 'deletecollection'}.get(method)
        if t.subresource:
            return await self._subresource(raw, method, t, accept)
        if verb is None or verb not in t.rt.verbs:
            raise errors.method_not_allowed()
        if t.name is not None and method == 'POST':
            raise errors.method_not_allowed()
        if t.name is None and method in ('PUT', 'PATCH'):
            raise errors.method_not_allowed()

        if watching:
            return await self._watch(raw, t)
        if method == 'GET' and t.name:
            obj = self._get(t.rt, t.namespace, t.name)
            if obj is None:
                raise errors.not_found(t.rt, t.name)
            return _json(_shape(obj, accept))
        if method == 'GET':
            return _json(self._list(t, query, accept))
        body = _parse_body(raw, await raw.read())
        dry = _dry_run(query, body if method == 'DELETE' else None)
        if method == 'POST':
            if t.rt.kind == 'SelfSubjectAccessReview':
                return _json(self._review(body), status=201)
            if t.rt.namespaced and t.namespace is None:
                raise errors.method_not_allowed()
            return _json(_shape(self._create(t.rt, t.namespace, body, dry=dry), accept), status=201)
        if method == 'PUT':
            return _json(_shape(self._replace(t, body, dry=dry), accept))
        if method == 'PATCH':
            obj, created = self._patch(t, raw, body, dry=dry)
            return _json(_shape(obj, accept), status=201 if created else 200)
        if method == 'DELETE' and t.name:
            return _json(_shape_any(self._delete(t.rt, t.namespace, t.name, body or {}, query, dry=dry), accept))
        return _json(self._delete_collection(t, body or {}, query, dry=dry))

    # ------------------------------------------------------------ discovery

    async def _discovery(self, request: kmock.Request, raw: aiohttp.web.BaseRequest,
                         parts: list[str]) -> aiohttp.web.StreamResponse:
        aggregated = 'as=APIGroupDiscoveryList' in raw.headers.get('Accept', '')
        if parts == ['api']:
            if aggregated:
                return _json(_aggregated([rt for rt in catalogue.RESOURCE_TYPES if not rt.group]),
                             content_type=AGGREGATED)
            doc = await self._serve_api(request)
            # kmock omits this list; real servers always send it.
            doc['serverAddressByClientCIDRs'] = [{'clientCIDR': '0.0.0.0/0', 'serverAddress': raw.host}]
            return _json(doc)
        if parts == ['apis']:
            if aggregated:
                return _json(_aggregated([rt for rt in catalogue.RESOURCE_TYPES if rt.group]),
                             content_type=AGGREGATED)
            doc = await self._serve_apis(request)
            order = list(catalogue.group_versions())
            doc['groups'].sort(key=lambda g: order.index(g['name']) if g['name'] in order else len(order))
            return _json(doc)
        if parts[0] == 'apis' and len(parts) == 2:
            if parts[1] not in catalogue.group_versions():
                raise errors.no_such_path()
            return _json(await self._serve_group(request))
        group, version = ('', parts[1]) if parts[0] == 'api' else (parts[1], parts[2])
        types = [rt for rt in catalogue.RESOURCE_TYPES if (rt.group, rt.version) == (group, version)]
        if not types:
            raise errors.no_such_path()
        doc = await self._serve_version(request)
        # kmock writes the core group's version as "/v1" (it joins an empty
        # group with a slash); kube-rs then fails to parse the group version.
        doc['groupVersion'] = types[0].group_version
        # kmock gives subresources their parent's kind and verbs; real servers
        # say e.g. deployments/scale is an autoscaling/v1 Scale with get/patch/update.
        by_plural = {rt.plural: rt for rt in types}
        fixed = []
        for entry in doc['resources']:
            plural, _, sub_name = entry['name'].partition('/')
            rt = by_plural[plural]
            entry['shortNames'] = sorted(entry.get('shortNames') or [])
            entry['verbs'] = sorted(entry.get('verbs') or [])
            entry['categories'] = sorted(entry.get('categories') or [])
            if not entry['categories']:
                del entry['categories']
            if sub_name:
                sub = rt.subresource(sub_name)
                entry.update(kind=sub.kind, verbs=list(sub.verbs), singularName='', shortNames=[])
                entry.pop('categories', None)
                if sub.group is not None:
                    entry.update(group=sub.group, version=sub.version)
            fixed.append(entry)
        fixed.sort(key=lambda e: e['name'])
        doc['resources'] = fixed
        return _json(doc)

    async def _serve_server_version(self, request: kmock.Request) -> dict[str, Any]:
        # kmock reports a k3s 1.26; the project targets the 1.33 API.
        doc = dict(await super()._serve_server_version(request))
        doc.update(SERVER_VERSION)
        return doc

    # ----------------------------------------------------------------- list

    def _matcher(self, rt: ResourceType, query: Mapping[str, str], name: str | None = None):
        labels = selectors.label_matcher(query.get('labelSelector'))
        fields = selectors.field_matcher(query.get('fieldSelector'), catalogue.FIELD_SELECTORS.get(rt.plural, ()))
        return lambda obj: (labels(_meta(obj).get('labels') or {}) and fields(obj)
                            and (name is None or _meta(obj).get('name') == name))

    def _list(self, t: Target, query: Mapping[str, str], accept: str) -> dict[str, Any]:
        match = self._matcher(t.rt, query)
        items = [obj for obj in self._all(t.rt, t.namespace) if match(obj)]
        meta: dict[str, Any] = {'resourceVersion': str(self._rv)}
        # Paging: the continue token says where the previous page stopped.
        if token := query.get('continue'):
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = tuple(state['after'])
            except (ValueError, KeyError, TypeError):
                raise bad_request('continue key is not valid: incorrect encoded start resourceVersion')
            if int(state.get('rv', 0)) < self._changes_floor:
                raise ApiError('Expired', 'The provided continue parameter is too old to display a consistent '
                               'list result. You can start a new list without the continue parameter.')
            items = [obj for obj in items if (_meta(obj).get('namespace') or '', _meta(obj)['name']) > start]
        limit = query.get('limit')
        if limit:
            try:
                limit_n = int(limit)
            except ValueError:
                raise bad_request(f'invalid limit: {limit!r}')
            if 0 < limit_n < len(items):
                remaining = len(items) - limit_n
                items = items[:limit_n]
                last = _meta(items[-1])
                after = [last.get('namespace') or '', last['name']]
                meta['continue'] = base64.urlsafe_b64encode(
                    json.dumps({'rv': self._rv, 'after': after}).encode()).decode()
                meta['remainingItemCount'] = remaining
        # List items carry no apiVersion/kind on a real server; the list does.
        for obj in items:
            obj.pop('apiVersion', None)
            obj.pop('kind', None)
        if 'as=PartialObjectMetadataList' in accept:
            return {'kind': 'PartialObjectMetadataList', 'apiVersion': 'meta.k8s.io/v1', 'metadata': meta,
                    'items': [{'metadata': _meta(obj)} for obj in items]}
        return {'kind': t.rt.list_kind, 'apiVersion': t.rt.api_version, 'metadata': meta, 'items': items}

    # --------------------------------------------------------------- create

    def _create(self, rt: ResourceType, namespace: str | None, body: Any, *, dry: bool,
                name: str | None = None) -> dict[str, Any]:
        obj = _check_body(rt, body)
        meta = obj['metadata']
        if rt.namespaced:
            if meta.get('namespace') and meta['namespace'] != namespace:
                raise bad_request('the namespace of the provided object does not match the namespace sent on the request')
            meta['namespace'] = namespace
            if rt.kind != 'Namespace' and self._get(catalogue.by_kind('v1', 'Namespace'), None, namespace) is None:
                raise errors.not_found(catalogue.by_kind('v1', 'Namespace'), namespace)
        else:
            meta.pop('namespace', None)
        if name is not None:
            meta['name'] = name
        if not meta.get('name'):
            if not meta.get('generateName'):
                raise errors.invalid(rt, None, 'metadata.name', 'Required value: name or generateName is required')
            # Like the server: five characters from an alphabet without vowels or look-alikes.
            suffix = ''.join(random.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))
            meta['name'] = meta['generateName'] + suffix
        if len(meta['name']) > 253 or not NAME_RE.match(meta['name']):
            raise errors.invalid(rt, meta['name'], 'metadata.name',
                                 f'Invalid value: "{meta["name"]}": a lowercase RFC 1123 subdomain must consist '
                                 "of lower case alphanumeric characters, '-' or '.'")
        if self._get(rt, namespace, meta['name']) is not None:
            raise errors.already_exists(rt, meta['name'])
        for managed in ('resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink'):
            meta.pop(managed, None)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now_rfc3339()
        meta['generation'] = 1
        # With a status subresource the status is the controllers' to write, not the creator's.
        if rt.has_status():
            obj.pop('status', None)
        _apply_defaults(rt, obj, keep_status=False)
        if dry:
            return obj
        return self._commit(rt, 'ADDED', obj, None)

    # --------------------------------------------------------------- update

    def _write(self, t: Target, new: Any, old: dict[str, Any], *, dry: bool, status_only: bool = False) -> dict[str, Any]:
        """Turn a client's desired object into the next stored state, as the API server does."""
        rt = t.rt
        if not isinstance(new, Mapping) or not isinstance(new.get('metadata', {}), Mapping):
            raise bad_request('the object must be a JSON object with object metadata')
        new = copy.deepcopy(dict(new))
        new_meta = dict(new.get('metadata') or {})
        old_meta = old['metadata']
        if new.get('kind') not in (None, rt.kind) and not status_only:
            raise bad_request(f'the kind of the object ({new.get("kind")}) does not match the URL ({rt.kind})')
        if new_meta.get('name') not in (None, old_meta['name']):
            raise bad_request(f'the name of the object ({new_meta.get("name")}) does not match the name on the URL '
                              f'({old_meta["name"]})')
        if rt.namespaced and new_meta.get('namespace') not in (None, old_meta.get('namespace')):
            raise bad_request('the namespace of the provided object does not match the namespace sent on the request')
        # Optimistic concurrency: a resourceVersion in the body must be the current one.
        given_rv = new_meta.get('resourceVersion')
        if given_rv not in (None, '') and str(given_rv) != old_meta.get('resourceVersion'):
            raise errors.conflict(rt, old_meta['name'])

        if status_only:
            # /status writes change the status and nothing else, metadata included.
            result = copy.deepcopy(old)
            if 'status' in new:
                result['status'] = new['status']
            else:
                result.pop('status', None)
        else:
            result = new
            result['metadata'] = new_meta
            if rt.has_status():
                # ... and main-resource writes never change the status.
                if 'status' in old:
                    result['status'] = copy.deepcopy(old['status'])
                else:
                    result.pop('status', None)
            for kept in ('uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds',
                         'namespace', 'name', 'generation', 'generateName'):
                if kept in old_meta:
                    new_meta[kept] = old_meta[kept]
                else:
                    new_meta.pop(kept, None)
            # Finalizers may be removed but not added once deletion has begun.
            if old_meta.get('deletionTimestamp'):
                new_meta['finalizers'] = [f for f in new_meta.get('finalizers') or []
                                          if f in (old_meta.get('finalizers') or [])]
                if not new_meta['finalizers']:
                    del new_meta['finalizers']
        result['apiVersion'], result['kind'] = rt.api_version, rt.kind
        result['metadata']['resourceVersion'] = old_meta.get('resourceVersion')
        _apply_defaults(rt, result, keep_status=True)

        if _spec_part(result) != _spec_part(old):
            result['metadata']['generation'] = int(old_meta.get('generation') or 0) + 1

        if result == old:
            return old  # a no-op write does not bump the resourceVersion, as on a real server
        if dry:
            return result
        # An object being deleted goes away once its last finalizer is removed.
        if result['metadata'].get('deletionTimestamp') and not result['metadata'].get('finalizers'):
            self._commit(rt, 'MODIFIED', result, old)
            return self._remove(rt, self._get(rt, t.namespace, old_meta['name']))
        return self._commit(rt, 'MODIFIED', result, old)

    def _replace(self, t: Target, body: Any, *, dry: bool) -> dict[str, Any]:
        old = self._get(t.rt, t.namespace, t.name)
        if old is None:
            raise errors.not_found(t.rt, t.name)
        return self._write(t, body, old, dry=dry)

    def _patch(self, t: Target, raw: aiohttp.web.BaseRequest, body: Any, *, dry: bool,
               status_only: bool = False) -> tuple[dict[str, Any], bool]:
        content_type = raw.content_type
        if content_type not in patches.PATCH_TYPES:
            raise ApiError('UnsupportedMediaType', f'the body of the request was in an unknown format - accepted '
                           f'media types include: {", ".join(patches.PATCH_TYPES)}')
        old = self._get(t.rt, t.namespace, t.name)
        if content_type == patches.APPLY_PATCH:
            if not raw.query.get('fieldManager'):
                raise bad_request('PATCH /apply requires a fieldManager query parameter')
            if not isinstance(body, Mapping) or not body.get('apiVersion') or not body.get('kind'):
                raise bad_request('apply patches must contain apiVersion and kind')
            if old is None and not status_only:
                return self._create(t.rt, t.namespace, body, dry=dry, name=t.name), True
        if old is None:
            raise errors.not_found(t.rt, t.name)
        new = patches.apply_patch(content_type, old, body)
        return self._write(t, new, old, dry=dry, status_only=status_only), False

    # --------------------------------------------------------------- delete

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        return self._commit(rt, 'DELETED', obj, obj)

    def _dependents(self, uid: str) -> list[tuple[ResourceType, dict[str, Any]]]:
        found = []
        for rt in catalogue.RESOURCE_TYPES:
            for obj in self._all(rt):
                if any(ref.get('uid') == uid for ref in _meta(obj).get('ownerReferences') or []):
                    found.append((rt, obj))
        return found

    def _delete(self, rt: ResourceType, namespace: str | None, name: str, options: Mapping[str, Any],
                query: Mapping[str, str], *, dry: bool) -> dict[str, Any]:
        obj = self._get(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt, name)
        if not isinstance(options, Mapping):
            raise bad_request('DeleteOptions must be an object')
        meta = obj['metadata']
        pre = options.get('preconditions') or {}
        if pre.get('uid') and pre['uid'] != meta.get('uid'):
            raise errors.conflict(rt, name, f'Precondition failed: UID in precondition: {pre["uid"]}, '
                                            f'UID in object meta: {meta.get("uid")}')
        if pre.get('resourceVersion') and pre['resourceVersion'] != meta.get('resourceVersion'):
            raise errors.conflict(rt, name, f'Precondition failed: ResourceVersion in precondition: '
                                            f'{pre["resourceVersion"]}, ResourceVersion in object meta: '
                                            f'{meta.get("resourceVersion")}')
        policy = options.get('propagationPolicy') or query.get('propagationPolicy') or 'Background'
        if policy not in ('Background', 'Foreground', 'Orphan'):
            raise errors.invalid(rt, name, 'propagationPolicy', f'Unsupported value: "{policy}"')
        grace = options.get('gracePeriodSeconds', query.get('gracePeriodSeconds'))

        marked = copy.deepcopy(obj)
        marked['metadata'].setdefault('deletionTimestamp', now_rfc3339())
        marked['metadata'].setdefault('deletionGracePeriodSeconds',
                                      int(grace) if grace is not None else (30 if rt.kind == 'Pod' else 0))
        if rt.kind == 'Namespace':
            marked.setdefault('status', {})['phase'] = 'Terminating'
        if dry:
            return marked if (rt.kind in ('Pod', 'Namespace') or meta.get('finalizers')) else \
                errors.success(rt, name, meta.get('uid'))
        if meta.get('finalizers'):
            # Finalizers hold the object back: it is only marked for deletion.
            if meta.get('deletionTimestamp'):
                return obj
            return self._commit(rt, 'MODIFIED', marked, obj)

        # The garbage collector's part: dependents go too, or are orphaned.
        dependents = self._dependents(meta['uid'])
        if rt.kind == 'Namespace':
            dependents += [(drt, d) for drt in catalogue.RESOURCE_TYPES if drt.namespaced
                           for d in self._all(drt, name)]
        for drt, dependent in dependents:
            dmeta = dependent['metadata']
            if policy == 'Orphan' and rt.kind != 'Namespace':
                orphan = copy.deepcopy(dependent)
                orphan['metadata']['ownerReferences'] = [r for r in dmeta.get('ownerReferences') or []
                                                         if r.get('uid') != meta['uid']]
                if not orphan['metadata']['ownerReferences']:
                    del orphan['metadata']['ownerReferences']
                self._commit(drt, 'MODIFIED', orphan, dependent)
            elif self._get(drt, dmeta.get('namespace'), dmeta['name']) is not None:
                self._delete(drt, dmeta.get('namespace'), dmeta['name'], {'propagationPolicy': policy}, {}, dry=False)
        final = self._remove(rt, marked)
        # Pods (graceful deletion) and namespaces answer with the object; the rest with a Status.
        if rt.kind in ('Pod', 'Namespace') or policy == 'Foreground':
            return final
        return errors.success(rt, name, meta.get('uid'))

    def _delete_collection(self, t: Target, options: Mapping[str, Any], query: Mapping[str, str],
                           *, dry: bool) -> dict[str, Any]:
        match = self._matcher(t.rt, query)
        deleted = []
        for obj in self._all(t.rt, t.namespace):
            if match(obj):
                meta = obj['metadata']
                self._delete(t.rt, meta.get('namespace'), meta['name'], options, query, dry=dry)
                obj.pop('apiVersion', None)
                obj.pop('kind', None)
                deleted.append(obj)
        return {'kind': t.rt.list_kind, 'apiVersion': t.rt.api_version,
                'metadata': {'resourceVersion': str(self._rv)}, 'items': deleted}

    # ---------------------------------------------------------- subresources

    async def _subresource(self, raw: aiohttp.web.BaseRequest, method: str, t: Target,
                           accept: str) -> aiohttp.web.StreamResponse:
        rt, sub = t.rt, t.subresource
        verb = {'GET': 'get', 'PUT': 'update', 'PATCH': 'patch', 'POST': 'create'}.get(method)
        allowed = rt.subresource(sub).verbs
        if sub == 'exec' and method in ('GET', 'POST'):
            return await self._exec(raw, t)
        if verb not in allowed:
            raise errors.method_not_allowed()
        obj = self._get(rt, t.namespace, t.name)
        if obj is None:
            raise errors.not_found(rt, t.name)
        if sub == 'log':
            return self._logs(raw, obj)
        if sub == 'eviction':
            # An eviction is a deletion that PodDisruptionBudgets could refuse; none are enforced here.
            body = _parse_body(raw, await raw.read())
            self._delete(rt, t.namespace, t.name, (body or {}).get('deleteOptions') or {}, raw.query,
                         dry=_dry_run(raw.query, None))
            return _json({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success', 'code': 201},
                         status=201)
        body = _parse_body(raw, await raw.read()) if method != 'GET' else None
        dry = _dry_run(raw.query, None)
        if sub in ('status', 'finalize'):
            if method == 'GET':
                return _json(_shape(obj, accept))
            if method == 'PUT':
                return _json(_shape(self._write(t, body, obj, dry=dry, status_only=(sub == 'status')), accept))
            result, _ = self._patch(t, raw, body, dry=dry, status_only=True)
            return _json(_shape(result, accept))
        if sub == 'scale':
            return _json(self._scale(t, raw, method, obj, body, dry=dry))
        raise errors.method_not_allowed()

    def _scale(self, t: Target, raw: aiohttp.web.BaseRequest, method: str, obj: dict[str, Any],
               body: Any, *, dry: bool) -> dict[str, Any]:
        """Serve `autoscaling/v1` Scale objects over `.spec.replicas`."""
        current = _scale_of(obj)
        if method == 'GET':
            return current
        if method == 'PUT':
            desired = body
        else:
            content_type = raw.content_type
            if content_type not in patches.PATCH_TYPES:
                raise ApiError('UnsupportedMediaType', 'the body of the request was in an unknown format')
            desired = patches.apply_patch(content_type, current, body)
        if not isinstance(desired, Mapping):
            raise bad_request('a Scale must be a JSON object')
        given_rv = _meta(desired).get('resourceVersion')
        if given_rv not in (None, '') and str(given_rv) != obj['metadata']['resourceVersion']:
            raise errors.conflict(t.rt, t.name)
        replicas = (desired.get('spec') or {}).get('replicas')
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(t.rt, t.name, 'spec.replicas', 'Invalid value: must be greater than or equal to 0')
        updated = copy.deepcopy(obj)
        updated.setdefault('spec', {})['replicas'] = replicas
        updated['metadata'].pop('resourceVersion', None)
        return _scale_of(self._write(t, updated, obj, dry=dry))

    def _logs(self, raw: aiohttp.web.BaseRequest, pod: dict[str, Any]) -> aiohttp.web.StreamResponse:
        query = raw.query
        container = pods.pick_container(pod, query.get('container'))
        previous = query.get('previous') in ('true', '1')
        text = self.scripts.logs(pod, container, previous)
        if text is None and previous:
            raise bad_request(f'previous terminated container "{container}" in pod "{pod["metadata"]["name"]}" '
                              'not found')

        def number(name: str) -> int | None:
            value = query.get(name)
            if value in (None, ''):
                return None
            try:
                return int(value)
            except ValueError:
                raise bad_request(f'invalid {name}: {value!r}')
        since_time = None
        if query.get('sinceTime'):
            try:
                since_time = datetime.datetime.fromisoformat(query['sinceTime'].replace('Z', '+00:00')).timestamp()
            except ValueError:
                raise bad_request(f'invalid sinceTime: {query["sinceTime"]!r}')
        body = pods.render_logs(text or '', tail_lines=number('tailLines'), since_seconds=number('sinceSeconds'),
                                since_time=since_time,
                                timestamps=query.get('timestamps') in ('true', '1'),
                                limit_bytes=number('limitBytes'))
        return aiohttp.web.Response(text=body, content_type='text/plain')

    async def _exec(self, raw: aiohttp.web.BaseRequest, t: Target) -> aiohttp.web.StreamResponse:
        pod = self._get(t.rt, t.namespace, t.name)
        if pod is None:
            raise errors.not_found(t.rt, t.name)
        if raw.headers.get('Upgrade', '').lower() != 'websocket':
            raise bad_request('Upgrade request required')
        if not raw.query.getall('command', []):
            raise bad_request('you must specify at least 1 command')
        if not any(raw.query.get(stream, default) in ('true', '1')
                   for stream, default in (('stdin', 'false'), ('stdout', 'true'), ('stderr', 'true'))):
            raise bad_request('you must specify at least 1 of stdin, stdout, stderr')
        container = pods.pick_container(pod, raw.query.get('container'))
        phase = (pod.get('status') or {}).get('phase')
        if phase != 'Running':
            raise bad_request(f'cannot exec into a container in a completed pod; current phase is {phase}'
                              if phase in ('Succeeded', 'Failed') else
                              f'unable to upgrade connection: pod {t.name} is not running (phase {phase})')
        return await pods.serve_exec(raw, pod, container, self.scripts, self.exec_log)

    def _review(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise bad_request('a SelfSubjectAccessReview must be a JSON object')
        review = copy.deepcopy(dict(body))
        review['apiVersion'], review['kind'] = 'authorization.k8s.io/v1', 'SelfSubjectAccessReview'
        review.setdefault('metadata', {}).setdefault('creationTimestamp', None)
        review['status'] = self.access.review(review)
        return review

    # ---------------------------------------------------------------- watch

    async def _watch(self, raw: aiohttp.web.BaseRequest, t: Target) -> aiohttp.web.StreamResponse:
        query = raw.query
        name = t.name
        match = self._matcher(t.rt, query, name)
        namespace = t.namespace
        in_scope = lambda obj: (namespace is None or _meta(obj).get('namespace') == namespace) and match(obj)
        bookmarks = query.get('allowWatchBookmarks') in ('true', '1')
        initial_events = query.get('sendInitialEvents') in ('true', '1')
        try:
            timeout = float(query['timeoutSeconds']) if query.get('timeoutSeconds') else DEFAULT_WATCH_TIMEOUT
        except ValueError:
            raise bad_request(f'invalid timeoutSeconds: {query.get("timeoutSeconds")!r}')
        rv_param = query.get('resourceVersion') or ''
        if rv_param not in ('', '0'):
            try:
                cursor = int(rv_param)
            except ValueError:
                raise bad_request(f'invalid resourceVersion: {rv_param!r}')
        else:
            cursor = self._rv

        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        await response.prepare(raw)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        rt = t.rt

        metadata_only = 'as=PartialObjectMetadata' in raw.headers.get('Accept', '')

        async def send(kind: str, obj: dict[str, Any]) -> None:
            if metadata_only and kind != 'ERROR':
                obj = {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': obj['metadata']}
            await response.write(json.dumps({'type': kind, 'object': obj}).encode() + b'\n')

        async def bookmark(rv: int, initial_end: bool = False) -> None:
            meta: dict[str, Any] = {'resourceVersion': str(rv)}
            if initial_end:
                meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
            await send('BOOKMARK', {'kind': rt.kind, 'apiVersion': rt.api_version, 'metadata': meta})

        async def expired() -> None:
            await send('ERROR', ApiError('Expired', f'too old resource version: {cursor} ({self._rv})').status())

        try:
            # Without a resourceVersion (or with "0") a watch starts with the current state.
            if rv_param in ('', '0') or initial_events:
                for obj in self._all(rt, namespace):
                    if in_scope(obj):
                        await send('ADDED', obj)
                if initial_events and bookmarks:
                    await bookmark(cursor, initial_end=True)
            elif cursor < self._changes_floor:
                await expired()
                await response.write_eof()
                return response
            last_bookmark = loop.time()
            while True:
                tick = self._tick
                if cursor < self._changes_floor:
                    await expired()  # the history was reset under this watch
                    break
                start = bisect.bisect_right(self._change_rvs, cursor)
                for change in self._changes[start:]:
                    cursor = change.rv
                    if change.rt is not rt:
                        continue
                    event = _visible(change, in_scope)
                    if event is not None:
                        await send(*event)
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:
                    break
                wait = remaining
                if bookmarks:
                    wait = max(0.0, min(remaining, last_bookmark + self.bookmark_interval - loop.time()))
                try:
                    await asyncio.wait_for(tick.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    if bookmarks and loop.time() - last_bookmark >= self.bookmark_interval:
                        await bookmark(max(cursor, self._rv))
                        last_bookmark = loop.time()
            if bookmarks and cursor >= self._changes_floor:
                await bookmark(max(cursor, self._rv))  # real servers bookmark right before a timeout
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the watcher hung up
        return response

    # -------------------------------------------------------------- control

    async def _control(self, raw: aiohttp.web.BaseRequest, path: str, method: str) -> aiohttp.web.StreamResponse:
        parts = path.split('/')[2:]
        body_bytes = await raw.read()
        if parts == ['fixture'] and method == 'POST':
            docs = _parse_documents(body_bytes, raw.content_type)
            return _json({'loaded': self.load_documents(docs)})
        if parts == ['reset'] and method == 'POST':
            self.reset(empty=raw.query.get('empty') in ('true', '1'))
            return _json({'resourceVersion': str(self._rv)})
        if parts == ['exec-log'] and method == 'GET':
            return _json({'items': self.exec_log})
        if parts == ['exec-log'] and method == 'DELETE':
            self.exec_log.clear()
            return _json({'items': []})
        if parts == ['access'] and method == 'GET':
            return _json(self.access.as_dict())
        if parts == ['access'] and method == 'PUT':
            self.access = AccessPolicy.parse(_control_json(body_bytes))
            return _json(self.access.as_dict())
        if parts == ['behaviors'] and method == 'GET':
            return _json({'items': [b.as_dict() for b in self.scripts.behaviors]})
        if parts == ['requests'] and method == 'GET':
            return _json({'items': [_request_summary(r) for r in list(self)
                                    if not r.url.path.startswith('/_emulator')]})
        if len(parts) == 4 and parts[0] == 'pods' and method == 'PUT' and parts[3] in ('logs', 'exec'):
            ns, pod_name, what = parts[1], parts[2], parts[3]
            data = _control_json(body_bytes)
            if what == 'logs':
                self.scripts.set_logs(ns, pod_name, data.get('logs'), data.get('previousLogs'))
            else:
                self.scripts.add(pods.PodBehavior.parse({'metadata': {'namespace': ns, 'name': pod_name},
                                                         'spec': {'exec': data}}))
            return _json(self.scripts.behaviors[-1].as_dict())
        raise ApiError('NotFound', f'no emulator control endpoint {method} {path}', details={})


# ------------------------------------------------------------------ helpers

def _ordered(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with apiVersion, kind, metadata first, as servers print objects."""
    head = {k: copy.deepcopy(obj[k]) for k in ('apiVersion', 'kind', 'metadata') if k in obj}
    return head | {k: copy.deepcopy(v) for k, v in obj.items() if k not in head}


def _json(data: Any, *, status: int = 200, content_type: str = 'application/json') -> aiohttp.web.Response:
    response = aiohttp.web.Response(body=json.dumps(data).encode(), status=status)
    response.headers['Content-Type'] = content_type
    return response


def _parse_body(raw: aiohttp.web.BaseRequest, data: bytes) -> Any:
    if not data or not data.strip():
        return None
    try:
        return json.loads(data)
    except ValueError:
        pass
    # Server-side apply bodies may be YAML; JSON is a subset, so it was tried first.
    if 'yaml' in raw.content_type:
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise bad_request(f'error decoding YAML: {exc}')
    raise bad_request('the body of the request is not valid JSON')


def _control_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b'{}')
    except ValueError:
        raise bad_request('the body must be a JSON object')
    if not isinstance(data, dict):
        raise bad_request('the body must be a JSON object')
    return data


def _parse_documents(body: bytes, content_type: str) -> list[Any]:
    """A fixture posted as a JSON list, a JSON List object, or a YAML stream."""
    try:
        data = json.loads(body)
        return data if isinstance(data, list) else [data]
    except ValueError:
        try:
            return [d for d in yaml.safe_load_all(body) if d is not None]
        except yaml.YAMLError as exc:
            raise bad_request(f'the fixture is neither JSON nor YAML: {exc}')


def _flatten(documents: Iterable[Any]) -> Iterable[Any]:
    for doc in documents:
        if isinstance(doc, Mapping) and isinstance(doc.get('items'), list) and str(doc.get('kind', '')).endswith('List'):
            yield from _flatten(doc['items'])
        else:
            yield doc


def _dry_run(query: Mapping[str, str], options: Any) -> bool:
    values = query.getall('dryRun', []) if hasattr(query, 'getall') else [query.get('dryRun')]
    if isinstance(options, Mapping):
        values = list(values) + list(options.get('dryRun') or [])
    for value in values:
        if value not in (None, '', 'All'):
            raise bad_request(f'Invalid dry run value: {value!r}; only "All" is supported')
    return 'All' in values


def _check_body(rt: ResourceType, body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise bad_request(f'the body of a {rt.kind} must be a JSON object')
    obj = copy.deepcopy(dict(body))
    if obj.get('apiVersion') not in (None, rt.api_version):
        raise bad_request(f'the API version in the data ({obj["apiVersion"]}) does not match the expected API '
                          f'version ({rt.api_version})')
    if obj.get('kind') not in (None, rt.kind):
        raise bad_request(f'the kind in the data ({obj["kind"]}) does not match the expected kind ({rt.kind})')
    if not isinstance(obj.setdefault('metadata', {}), dict):
        raise bad_request('metadata must be an object')
    obj['apiVersion'], obj['kind'] = rt.api_version, rt.kind
    return obj


def _apply_defaults(rt: ResourceType, obj: dict[str, Any], *, keep_status: bool) -> None:
    """The few defaults that clients read back."""
    meta = obj['metadata']
    if rt.kind == 'Namespace':
        meta.setdefault('labels', {})['kubernetes.io/metadata.name'] = meta['name']
        obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
        obj.setdefault('status', {}).setdefault('phase', 'Active')
    elif rt.kind == 'Pod' and not keep_status:
        obj['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}
    elif rt.kind in ('Deployment', 'ReplicaSet', 'StatefulSet'):
        obj.setdefault('spec', {}).setdefault('replicas', 1)
    elif rt.kind == 'Service':
        obj.setdefault('spec', {}).setdefault('type', 'ClusterIP')


def _shape(obj: dict[str, Any], accept: str) -> dict[str, Any]:
    """Answer `Accept: ...;as=PartialObjectMetadata` with just the metadata, like a real server."""
    if 'as=PartialObjectMetadata' in accept and obj.get('kind') != 'Status':
        return {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': obj.get('metadata', {})}
    return obj


def _shape_any(obj: dict[str, Any], accept: str) -> dict[str, Any]:
    return obj if obj.get('kind') == 'Status' else _shape(obj, accept)


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj['metadata']
    spec, status = obj.get('spec') or {}, obj.get('status') or {}
    return {
        'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
        'metadata': {k: meta[k] for k in ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp')
                     if k in meta},
        'spec': {'replicas': spec.get('replicas', 1)},
        'status': {'replicas': status.get('replicas', 0),
                   'selector': selectors.selector_string(spec.get('selector'))},
    }


def _visible(change: Change, in_scope) -> tuple[str, dict[str, Any]] | None:
    """How one change looks through a selector: moving out of it is a deletion, into it an addition."""
    new_in = in_scope(change.obj)
    if change.type == 'ADDED':
        return ('ADDED', change.obj) if new_in else None
    if change.type == 'DELETED':
        return ('DELETED', change.obj) if new_in or (change.old is not None and in_scope(change.old)) else None
    old_in = change.old is not None and in_scope(change.old)
    if old_in and new_in:
        return 'MODIFIED', change.obj
    if new_in:
        return 'ADDED', change.obj
    if old_in:
        return 'DELETED', change.obj
    return None


def _aggregated(types: list[ResourceType]) -> dict[str, Any]:
    """An `apidiscovery.k8s.io/v2` document, which kube-rs `Discovery::run_aggregated` asks for."""
    groups: dict[str, dict[str, list[ResourceType]]] = {}
    for rt in types:
        groups.setdefault(rt.group, {}).setdefault(rt.version, []).append(rt)
    items = []
    for group, versions in groups.items():
        items.append({
            'metadata': {'name': group} if group else {},
            'versions': [{
                'version': version,
                'freshness': 'Current',
                'resources': [{
                    'resource': rt.plural,
                    'responseKind': {'group': rt.group, 'version': rt.version, 'kind': rt.kind},
                    'scope': 'Namespaced' if rt.namespaced else 'Cluster',
                    'singularResource': rt.singular,
                    'verbs': list(rt.verbs),
                    'shortNames': list(rt.short_names),
                    'categories': list(rt.categories),
                    'subresources': [{
                        'subresource': sub.name,
                        'responseKind': {'group': sub.group if sub.group is not None else rt.group,
                                         'version': sub.version or rt.version, 'kind': sub.kind},
                        'verbs': list(sub.verbs),
                    } for sub in rt.subresources],
                } for rt in rts],
            } for version, rts in versions.items()],
        })
    return {'kind': 'APIGroupDiscoveryList', 'apiVersion': 'apidiscovery.k8s.io/v2', 'metadata': {}, 'items': items}


def _request_summary(request: kmock.Request) -> dict[str, Any]:
    raw = request._raw_request
    body: Any = None
    if request.body:
        try:
            body = json.loads(request.body)
        except ValueError:
            body = request.body.decode(errors='replace')
    return {
        'method': str(request.method.value if hasattr(request.method, 'value') else request.method),
        'path': request.url.path,
        'query': [[k, v] for k, v in (raw.query.items() if raw is not None else [])],
        'contentType': raw.content_type if raw is not None and request.body else None,
        'body': body,
    }
