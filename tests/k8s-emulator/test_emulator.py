"""
Self-checks of the Kubernetes API emulator, through HTTP only, as a client sees it.

Each test asserts something kube-rs (or kubectl) would notice if it were
wrong, so that a kmock upgrade that changes behaviour fails here loudly and
not in a Rust test far away. The server runs as a subprocess, started the way
the Rust suite starts it.
"""
import asyncio
import base64
import hashlib
import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse

import aiohttp
import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
SERVER = HERE / 'server.py'
FIXTURE = HERE / 'fixtures' / 'elson.yaml'
NS = 'elson'
DEPLOY = f'/apis/apps/v1/namespaces/{NS}/deployments/elson-backend'
PODS = f'/api/v1/namespaces/{NS}/pods'
POD = 'elson-backend-6d8f7c9b5d-4xkqz'
CMS = f'/api/v1/namespaces/{NS}/configmaps'
JSON = 'application/json'
MERGE = 'application/merge-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'
JSONPATCH = 'application/json-patch+json'
APPLY = 'application/apply-patch+yaml'
# What kube-rs 5 sends for aggregated discovery (kube-core ACCEPT_AGGREGATED_DISCOVERY_V2).
AGGREGATED_ACCEPT = ('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,'
                     'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json')


def start_server(*args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(SERVER), '--port', '0', *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith('LISTENING '), f'unexpected first line {line!r}; stderr: {proc.stderr.read()}'
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    kubeconfig = tmp_path_factory.mktemp('kube') / 'config'
    proc, port = start_server('--fixture', str(FIXTURE), '--kubeconfig', str(kubeconfig),
                              '--bookmark-interval', '0.3')
    yield {'port': port, 'kubeconfig': kubeconfig, 'proc': proc}
    assert stop_server(proc) == 0


class Api:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body=None, *, content_type: str = JSON,
                headers: dict | None = None, query: dict | list | None = None):
        if query:
            path += '?' + urllib.parse.urlencode(query, doseq=True)
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=20)
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            hdrs['Content-Type'] = content_type
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        ctype = resp.getheader('Content-Type', '')
        payload = json.loads(raw) if ctype.startswith('application/json') and raw else raw.decode()
        return resp.status, payload, resp

    def get(self, path, **kw):
        return self.request('GET', path, **kw)

    def ok(self, method, path, body=None, *, expect=(200, 201), **kw):
        status, payload, _ = self.request(method, path, body, **kw)
        assert status in ((expect,) if isinstance(expect, int) else expect), (status, payload)
        return payload

    def watch(self, path: str, query: dict) -> list[dict]:
        """Read a watch stream to its end (tests always pass timeoutSeconds)."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        conn.request('GET', path + '?' + urllib.parse.urlencode(dict(query, watch='true')))
        resp = conn.getresponse()
        assert resp.status == 200
        events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        conn.close()
        return events


@pytest.fixture
def api(server):
    client = Api(server['port'])
    client.ok('POST', '/_emulator/reset')  # every test starts from the fixture
    return client


def names(listing: dict) -> list[str]:
    return [item['metadata']['name'] for item in listing['items']]


# ----------------------------------------------------------------- start-up

def test_kubeconfig_points_at_the_server(server):
    config = yaml.safe_load(server['kubeconfig'].read_text())
    assert config['current-context'] == 'emulator'
    cluster = {c['name']: c['cluster'] for c in config['clusters']}['emulator']
    assert cluster['server'] == f"http://127.0.0.1:{server['port']}"
    context = {c['name']: c['context'] for c in config['contexts']}['emulator']
    assert context == {'cluster': 'emulator', 'user': 'emulator'}
    user = {u['name']: u['user'] for u in config['users']}['emulator']
    assert user['token']


def test_sigterm_stops_the_server_cleanly():
    proc, port = start_server()
    assert Api(port).ok('GET', '/version')['minor'] == '33'
    # An open watch must not hold the shutdown back.
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    conn.request('GET', '/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=300')
    assert conn.getresponse().status == 200
    started = time.monotonic()
    assert stop_server(proc) == 0
    assert time.monotonic() - started < 5
    assert proc.stdout.read() == ''  # nothing after the LISTENING line
    conn.close()


# ---------------------------------------------------------------- discovery

def test_core_discovery_says_v1(api):
    doc = api.ok('GET', '/api/v1')
    assert doc['kind'] == 'APIResourceList'
    assert doc['groupVersion'] == 'v1'
    versions = api.ok('GET', '/api')
    assert versions['versions'] == ['v1']
    assert versions['serverAddressByClientCIDRs']


@pytest.mark.parametrize('group_version,plural,kind,namespaced,short', [
    ('v1', 'namespaces', 'Namespace', False, ['ns']),
    ('v1', 'nodes', 'Node', False, ['no']),
    ('v1', 'pods', 'Pod', True, ['po']),
    ('v1', 'services', 'Service', True, ['svc']),
    ('v1', 'configmaps', 'ConfigMap', True, ['cm']),
    ('v1', 'secrets', 'Secret', True, []),
    ('v1', 'events', 'Event', True, ['ev']),
    ('v1', 'serviceaccounts', 'ServiceAccount', True, ['sa']),
    ('v1', 'resourcequotas', 'ResourceQuota', True, ['quota']),
    ('v1', 'limitranges', 'LimitRange', True, ['limits']),
    ('v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', True, ['pvc']),
    ('apps/v1', 'deployments', 'Deployment', True, ['deploy']),
    ('apps/v1', 'replicasets', 'ReplicaSet', True, ['rs']),
    ('apps/v1', 'statefulsets', 'StatefulSet', True, ['sts']),
    ('apps/v1', 'daemonsets', 'DaemonSet', True, ['ds']),
    ('autoscaling/v2', 'horizontalpodautoscalers', 'HorizontalPodAutoscaler', True, ['hpa']),
    ('policy/v1', 'poddisruptionbudgets', 'PodDisruptionBudget', True, ['pdb']),
    ('networking.k8s.io/v1', 'ingresses', 'Ingress', True, ['ing']),
    ('networking.k8s.io/v1', 'networkpolicies', 'NetworkPolicy', True, ['netpol']),
    ('batch/v1', 'jobs', 'Job', True, []),
    ('batch/v1', 'cronjobs', 'CronJob', True, ['cj']),
    ('authorization.k8s.io/v1', 'selfsubjectaccessreviews', 'SelfSubjectAccessReview', False, []),
])
def test_discovery_facts(api, group_version, plural, kind, namespaced, short):
    prefix = '/api/' if group_version == 'v1' else '/apis/'
    doc = api.ok('GET', prefix + group_version)
    assert doc['groupVersion'] == group_version
    entry = {r['name']: r for r in doc['resources']}[plural]
    assert entry['kind'] == kind
    assert entry['namespaced'] is namespaced
    assert entry['singularName'] == kind.lower()
    assert entry['shortNames'] == short
    expected_verbs = {'create'} if kind == 'SelfSubjectAccessReview' else {'get', 'list', 'watch', 'create', 'patch',
                                                                          'update', 'delete'}
    assert expected_verbs <= set(entry['verbs'])


def test_discovery_subresources(api):
    apps = {r['name']: r for r in api.ok('GET', '/apis/apps/v1')['resources']}
    assert apps['deployments/status']['kind'] == 'Deployment'
    assert sorted(apps['deployments/status']['verbs']) == ['get', 'patch', 'update']
    scale = apps['deployments/scale']
    assert (scale['kind'], scale['group'], scale['version']) == ('Scale', 'autoscaling', 'v1')
    core = {r['name']: r for r in api.ok('GET', '/api/v1')['resources']}
    assert core['pods/log']['verbs'] == ['get']
    assert 'create' in core['pods/exec']['verbs']
    assert 'pods/status' in core


def test_api_groups_are_listed_with_preferred_versions(api):
    groups = {g['name']: g for g in api.ok('GET', '/apis')['groups']}
    expected = {'apps': 'v1', 'autoscaling': 'v2', 'policy': 'v1', 'networking.k8s.io': 'v1', 'batch': 'v1',
                'authorization.k8s.io': 'v1'}
    for name, version in expected.items():
        assert groups[name]['preferredVersion'] == {'groupVersion': f'{name}/{version}', 'version': version}
    assert api.ok('GET', '/apis/apps')['preferredVersion']['version'] == 'v1'
    status, body, _ = api.get('/apis/no.such.group/v1')
    assert (status, body['reason']) == (404, 'NotFound')


def test_aggregated_discovery_as_kube_rs_asks_for_it(api):
    status, doc, resp = api.get('/apis', headers={'Accept': AGGREGATED_ACCEPT})
    assert status == 200
    assert 'as=APIGroupDiscoveryList' in resp.getheader('Content-Type')
    assert doc['kind'] == 'APIGroupDiscoveryList'
    groups = {g['metadata']['name']: g for g in doc['items']}
    deployments = {r['resource']: r for r in groups['apps']['versions'][0]['resources']}['deployments']
    assert deployments['scope'] == 'Namespaced'
    assert deployments['responseKind'] == {'group': 'apps', 'version': 'v1', 'kind': 'Deployment'}
    assert {s['subresource'] for s in deployments['subresources']} == {'status', 'scale'}
    _, core, _ = api.get('/api', headers={'Accept': AGGREGATED_ACCEPT})
    resources = {r['resource']: r for r in core['items'][0]['versions'][0]['resources']}
    assert resources['namespaces']['scope'] == 'Cluster'
    assert resources['pods']['shortNames'] == ['po']


def test_version_is_1_33(api):
    version = api.ok('GET', '/version')
    assert (version['major'], version['minor']) == ('1', '33')
    assert version['gitVersion'].startswith('v1.33.')


# -------------------------------------------------------------------- reads

def test_list_has_kind_api_version_and_numeric_resource_version(api):
    listing = api.ok('GET', PODS)
    assert listing['kind'] == 'PodList'
    assert listing['apiVersion'] == 'v1'
    assert listing['metadata']['resourceVersion'].isdigit()
    assert len(listing['items']) == 3
    assert all(item['metadata']['resourceVersion'].isdigit() for item in listing['items'])
    deployments = api.ok('GET', f'/apis/apps/v1/namespaces/{NS}/deployments')
    assert (deployments['kind'], deployments['apiVersion']) == ('DeploymentList', 'apps/v1')


def test_cluster_scoped_objects_can_be_read_by_name(api):
    namespace = api.ok('GET', f'/api/v1/namespaces/{NS}')
    assert namespace['kind'] == 'Namespace'
    assert namespace['metadata']['name'] == NS
    assert namespace['status']['phase'] == 'Active'
    assert 'elson' in names(api.ok('GET', '/api/v1/namespaces'))
    node = api.ok('GET', '/api/v1/nodes/worker-1')
    assert node['kind'] == 'Node' and 'namespace' not in node['metadata']
    assert names(api.ok('GET', '/api/v1/nodes')) == ['worker-1', 'worker-2', 'worker-3']


def test_missing_object_is_a_not_found_status(api):
    status, body, _ = api.get(f'{PODS}/no-such-pod')
    assert status == 404
    assert body['kind'] == 'Status' and body['apiVersion'] == 'v1'
    assert body['status'] == 'Failure'
    assert body['reason'] == 'NotFound'
    assert body['code'] == 404
    assert body['details'] == {'name': 'no-such-pod', 'kind': 'pods'}
    assert body['message'] == 'pods "no-such-pod" not found'
    status, body, _ = api.get(f'/apis/apps/v1/namespaces/{NS}/deployments/nope')
    assert body['details']['group'] == 'apps'


def test_unknown_resource_and_method(api):
    status, body, _ = api.get(f'/api/v1/namespaces/{NS}/widgets')
    assert (status, body['reason']) == (404, 'NotFound')
    status, body, _ = api.request('PUT', PODS, {})
    assert (status, body['reason']) == (405, 'MethodNotAllowed')


def test_partial_object_metadata(api):
    accept = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1'
    doc = api.ok('GET', DEPLOY, headers={'Accept': accept})
    assert doc['kind'] == 'PartialObjectMetadata' and 'spec' not in doc
    assert doc['metadata']['name'] == 'elson-backend'
    listing = api.ok('GET', PODS, headers={'Accept': accept.replace('PartialObjectMetadata', 'PartialObjectMetadataList')})
    assert listing['kind'] == 'PartialObjectMetadataList' and len(listing['items']) == 3


# ---------------------------------------------------------------- selectors

@pytest.fixture
def labelled(api):
    for name, labels in {'a': {'env': 'prod', 'tier': 'web'}, 'b': {'env': 'staging', 'tier': 'web'},
                         'c': {'env': 'prod'}, 'd': {}}.items():
        api.ok('POST', CMS, {'metadata': {'name': f'sel-{name}', 'labels': labels or None}, 'data': {}})
    return api


@pytest.mark.parametrize('selector,expected', [
    ('env=prod', 'ac'), ('env==prod', 'ac'), ('env!=prod', 'bd'), ('env in (prod,staging)', 'abc'),
    ('env notin (prod)', 'bd'), ('tier', 'ab'), ('!tier', 'cd'), ('env=prod,tier=web', 'a'),
    ('env in (prod),!tier', 'c'),
])
def test_label_selectors(labelled, selector, expected):
    listing = labelled.ok('GET', CMS, query={'labelSelector': selector})
    got = ''.join(n[-1] for n in names(listing) if n.startswith('sel-'))
    assert got == expected


def test_bad_label_selector_is_a_bad_request(api):
    status, body, _ = api.get(CMS, query={'labelSelector': 'env in ()'})
    assert (status, body['reason']) == (400, 'BadRequest')


def test_field_selectors(api):
    assert names(api.ok('GET', PODS, query={'fieldSelector': f'metadata.name={POD}'})) == [POD]
    cms = api.ok('GET', '/api/v1/configmaps', query={'fieldSelector': 'metadata.namespace=elson'})
    assert names(cms) == ['backend-config']
    api.ok('PATCH', f'{PODS}/{POD}/status', {'status': {'phase': 'Failed'}}, content_type=MERGE)
    running = api.ok('GET', PODS, query={'fieldSelector': 'status.phase=Running'})
    assert POD not in names(running) and len(running['items']) == 2
    assert names(api.ok('GET', PODS, query={'fieldSelector': 'status.phase!=Running'})) == [POD]
    status, body, _ = api.get(PODS, query={'fieldSelector': 'spec.containers=x'})
    assert (status, body['reason']) == (400, 'BadRequest')


def test_limit_and_continue(api):
    for i in range(5):
        api.ok('POST', CMS, {'metadata': {'name': f'page-{i}'}})
    everything = names(api.ok('GET', CMS))
    seen, token, pages = [], None, 0
    while True:
        query = {'limit': 2} | ({'continue': token} if token else {})
        page = api.ok('GET', CMS, query=query)
        pages += 1
        assert len(page['items']) <= 2
        seen += names(page)
        token = page['metadata'].get('continue')
        if not token:
            break
        assert page['metadata']['remainingItemCount'] == len(everything) - len(seen)
    assert seen == everything and pages == 3


# -------------------------------------------------------------------- writes

def test_create_sets_server_fields_and_answers_201(api):
    status, cm, _ = api.request('POST', CMS, {'apiVersion': 'v1', 'kind': 'ConfigMap',
                                              'metadata': {'name': 'made'}, 'data': {'k': 'v'}})
    assert status == 201
    meta = cm['metadata']
    assert meta['uid'] and meta['creationTimestamp'].endswith('Z')
    assert meta['resourceVersion'].isdigit() and meta['generation'] == 1
    assert meta['namespace'] == NS
    second = api.ok('POST', CMS, {'metadata': {'name': 'made-too'}})
    assert int(second['metadata']['resourceVersion']) > int(meta['resourceVersion'])
    status, body, _ = api.request('POST', CMS, {'metadata': {'name': 'made'}})
    assert (status, body['reason'], body['code']) == (409, 'AlreadyExists', 409)
    generated = api.ok('POST', CMS, {'metadata': {'generateName': 'gen-'}})
    assert generated['metadata']['name'].startswith('gen-') and len(generated['metadata']['name']) == 9


def test_create_in_a_missing_namespace_is_refused(api):
    status, body, _ = api.request('POST', '/api/v1/namespaces/ghost/configmaps', {'metadata': {'name': 'x'}})
    assert (status, body['reason']) == (404, 'NotFound')


def test_generation_counts_spec_changes_only(api):
    before = api.ok('GET', DEPLOY)
    gen = before['metadata']['generation']
    labelled = api.ok('PATCH', DEPLOY, {'metadata': {'labels': {'touched': 'yes'}}}, content_type=MERGE)
    assert labelled['metadata']['generation'] == gen
    assert int(labelled['metadata']['resourceVersion']) > int(before['metadata']['resourceVersion'])
    scaled = api.ok('PATCH', DEPLOY, {'spec': {'replicas': 4}}, content_type=MERGE)
    assert scaled['metadata']['generation'] == gen + 1
    status_only = api.ok('PATCH', DEPLOY + '/status', {'status': {'observedGeneration': gen + 1}},
                         content_type=MERGE)
    assert status_only['metadata']['generation'] == gen + 1
    unchanged = api.ok('PATCH', DEPLOY, {'spec': {'replicas': 4}}, content_type=MERGE)
    assert unchanged['metadata']['resourceVersion'] == status_only['metadata']['resourceVersion']


def test_put_replaces_and_stale_resource_version_conflicts(api):
    current = api.ok('GET', f'{CMS}/backend-config')
    replaced = dict(current, data={'ONLY': 'this'})
    result = api.ok('PUT', f'{CMS}/backend-config', replaced)
    assert result['data'] == {'ONLY': 'this'}
    assert result['metadata']['uid'] == current['metadata']['uid']
    assert int(result['metadata']['resourceVersion']) > int(current['metadata']['resourceVersion'])
    status, body, _ = api.request('PUT', f'{CMS}/backend-config', dict(current, data={'stale': 'write'}))
    assert status == 409
    assert body['kind'] == 'Status' and body['reason'] == 'Conflict' and body['status'] == 'Failure'
    assert api.ok('GET', f'{CMS}/backend-config')['data'] == {'ONLY': 'this'}
    status, body, _ = api.request('PUT', f'{CMS}/not-there', {'metadata': {'name': 'not-there'}})
    assert (status, body['reason']) == (404, 'NotFound')


def test_strategic_merge_merges_lists_by_key(api):
    patch = {'spec': {'template': {'spec': {
        'containers': [
            {'name': 'backend', 'image': 'registry.example.com/elson/backend:1.4.3',
             'env': [{'name': 'NEW_FLAG', 'value': 'on'}, {'name': 'REDIS_URL', '$patch': 'delete'}],
             'volumeMounts': [{'mountPath': '/tmp', 'name': 'scratch'}]},
            {'name': 'sidecar', 'image': 'busybox:1.36'}],
        'volumes': [{'name': 'scratch', 'emptyDir': {}}],
        'tolerations': [{'key': 'dedicated', 'operator': 'Exists'}],
    }}}}
    result = api.ok('PATCH', DEPLOY, patch, content_type=STRATEGIC)
    pod_spec = result['spec']['template']['spec']
    containers = {c['name']: c for c in pod_spec['containers']}
    assert set(containers) == {'backend', 'sidecar'}
    backend = containers['backend']
    assert backend['image'].endswith(':1.4.3')
    assert backend['ports'] == [{'name': 'http', 'containerPort': 8000, 'protocol': 'TCP'}]
    assert backend['resources']['limits']['memory'] == '512Mi'
    assert [e['name'] for e in backend['env']] == ['DATABASE_URL', 'SECRET_KEY', 'NEW_FLAG']
    assert [m['mountPath'] for m in backend['volumeMounts']] == ['/etc/elson', '/tmp']
    assert {v['name'] for v in pod_spec['volumes']} == {'config', 'scratch'}
    assert pod_spec['tolerations'] == [{'key': 'dedicated', 'operator': 'Exists'}]
    replaced = api.ok('PATCH', DEPLOY, {'spec': {'template': {'spec': {
        'tolerations': [{'key': 'other', 'operator': 'Exists'}]}}}}, content_type=STRATEGIC)
    assert replaced['spec']['template']['spec']['tolerations'] == [{'key': 'other', 'operator': 'Exists'}]
    ports = api.ok('PATCH', DEPLOY, {'spec': {'template': {'spec': {'containers': [
        {'name': 'backend', 'ports': [{'containerPort': 9090, 'name': 'metrics'}]}]}}}}, content_type=STRATEGIC)
    backend = {c['name']: c for c in ports['spec']['template']['spec']['containers']}['backend']
    assert [p['containerPort'] for p in backend['ports']] == [8000, 9090]


def test_merge_patch_replaces_lists_and_null_deletes(api):
    result = api.ok('PATCH', DEPLOY, {
        'metadata': {'annotations': {'kubernetes.io/change-cause': None}},
        'spec': {'template': {'spec': {'containers': [{'name': 'only', 'image': 'x:1'}]}}}},
        content_type=MERGE)
    assert result['spec']['template']['spec']['containers'] == [{'name': 'only', 'image': 'x:1'}]
    assert 'kubernetes.io/change-cause' not in result['metadata']['annotations']


def test_json_patch(api):
    result = api.ok('PATCH', DEPLOY, [
        {'op': 'test', 'path': '/spec/replicas', 'value': 3},
        {'op': 'replace', 'path': '/spec/replicas', 'value': 2},
        {'op': 'add', 'path': '/metadata/labels/patched', 'value': 'json'}], content_type=JSONPATCH)
    assert result['spec']['replicas'] == 2 and result['metadata']['labels']['patched'] == 'json'
    status, body, _ = api.request('PATCH', DEPLOY, [{'op': 'test', 'path': '/spec/replicas', 'value': 99}],
                                  content_type=JSONPATCH)
    assert (status, body['kind']) == (422, 'Status')
    assert api.ok('GET', DEPLOY)['spec']['replicas'] == 2


def test_server_side_apply_creates_then_merges(api):
    applied = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'applied'}, 'data': {'a': '1'}}
    status, body, _ = api.request('PATCH', f'{CMS}/applied', applied, content_type=APPLY,
                                  query={'fieldManager': 'runbook', 'force': 'true'})
    assert status == 201 and body['data'] == {'a': '1'}
    body = api.ok('PATCH', f'{CMS}/applied', dict(applied, data={'b': '2'}), content_type=APPLY,
                  query={'fieldManager': 'runbook'})
    assert body['data'] == {'a': '1', 'b': '2'}
    yaml_body = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  c: "3"\n'
    body = api.ok('PATCH', f'{CMS}/applied', yaml_body, content_type=APPLY, query={'fieldManager': 'runbook'})
    assert body['data']['c'] == '3'
    status, body, _ = api.request('PATCH', f'{CMS}/applied', applied, content_type=APPLY)
    assert (status, body['reason']) == (400, 'BadRequest')


def test_dry_run_persists_nothing(api):
    dry = {'dryRun': 'All'}
    status, body, _ = api.request('POST', CMS, {'metadata': {'name': 'dry'}}, query=dry)
    assert status == 201 and body['metadata']['name'] == 'dry'
    assert api.get(f'{CMS}/dry')[0] == 404
    before = api.ok('GET', DEPLOY)
    patched = api.ok('PATCH', DEPLOY, {'spec': {'replicas': 9}}, content_type=MERGE, query=dry)
    assert patched['spec']['replicas'] == 9
    replaced = api.ok('PUT', DEPLOY, dict(before, spec=dict(before['spec'], replicas=7)), query=dry)
    assert replaced['spec']['replicas'] == 7
    after = api.ok('GET', DEPLOY)
    assert after['spec']['replicas'] == 3
    assert after['metadata']['resourceVersion'] == before['metadata']['resourceVersion']
    api.ok('DELETE', DEPLOY, {'dryRun': ['All']})
    api.ok('DELETE', f'{CMS}/backend-config', query=dry)
    assert api.get(DEPLOY)[0] == 200 and api.get(f'{CMS}/backend-config')[0] == 200
    assert len(api.ok('GET', PODS)['items']) == 3


# -------------------------------------------------------------- subresources

def test_status_subresource_changes_only_status(api):
    before = api.ok('GET', DEPLOY)
    result = api.ok('PATCH', DEPLOY + '/status', {'spec': {'replicas': 1}, 'metadata': {'labels': {'x': 'y'}},
                                                  'status': {'readyReplicas': 1}}, content_type=MERGE)
    assert result['status']['readyReplicas'] == 1
    assert result['spec']['replicas'] == 3 and 'x' not in result['metadata']['labels']
    assert result['metadata']['generation'] == before['metadata']['generation']
    put = dict(result, status=dict(result['status'], readyReplicas=2))
    assert api.ok('PUT', DEPLOY + '/status', put)['status']['readyReplicas'] == 2
    # ... and the main resource cannot change the status.
    main = api.ok('PATCH', DEPLOY, {'status': {'readyReplicas': 0}}, content_type=MERGE)
    assert main['status']['readyReplicas'] == 2
    assert api.ok('GET', DEPLOY + '/status')['kind'] == 'Deployment'


def test_scale_subresource(api):
    scale = api.ok('GET', DEPLOY + '/scale')
    assert (scale['kind'], scale['apiVersion']) == ('Scale', 'autoscaling/v1')
    assert scale['spec']['replicas'] == 3
    assert scale['status'] == {'replicas': 3, 'selector': 'app=elson-backend'}
    gen = api.ok('GET', DEPLOY)['metadata']['generation']
    updated = api.ok('PUT', DEPLOY + '/scale', dict(scale, spec={'replicas': 5}))
    assert updated['spec']['replicas'] == 5
    deployment = api.ok('GET', DEPLOY)
    assert deployment['spec']['replicas'] == 5 and deployment['metadata']['generation'] == gen + 1
    patched = api.ok('PATCH', DEPLOY + '/scale', {'spec': {'replicas': 2}}, content_type=MERGE)
    assert patched['spec']['replicas'] == 2 and api.ok('GET', DEPLOY)['spec']['replicas'] == 2
    status, body, _ = api.request('PUT', DEPLOY + '/scale', dict(scale, spec={'replicas': 1}))
    assert (status, body['reason']) == (409, 'Conflict')


def test_pod_logs(api):
    path = f'{PODS}/{POD}/log'
    status, text, resp = api.get(path)
    assert status == 200 and resp.getheader('Content-Type').startswith('text/plain')
    assert 'Starting gunicorn' in text
    lines = text.splitlines()
    status, tail, _ = api.get(path, query={'tailLines': 2})
    assert tail.splitlines() == lines[-2:]
    assert api.get(path, query={'sinceSeconds': 3})[1].splitlines() == lines[-4:]
    assert api.get(path, query={'sinceTime': '2999-01-01T00:00:00Z'})[1] == ''
    stamped = api.get(path, query={'timestamps': 'true', 'tailLines': 1})[1]
    assert stamped.split(' ', 1)[1] == lines[-1] + '\n' and stamped[:4].isdigit()
    status, body, _ = api.get(path, query={'container': 'nope'})
    assert (status, body['reason']) == (400, 'BadRequest')
    api.ok('PUT', f'/_emulator/pods/{NS}/{POD}/logs', {'logs': {'backend': 'one\ntwo\n'}})
    assert api.get(path, query={'container': 'backend'})[1] == 'one\ntwo\n'
    other = 'elson-backend-6d8f7c9b5d-8rtwn'
    assert 'Starting gunicorn' in api.get(f'{PODS}/{other}/log')[1]  # other pods keep the fixture's text


# --------------------------------------------------------------------- exec

async def _exec(port: int, pod: str, command: list[str], protocols=('v5.channel.k8s.io', 'v4.channel.k8s.io'),
                stdin: bytes | None = None):
    query = [('command', c) for c in command] + [('stdout', 'true'), ('stderr', 'true'), ('container', 'backend')]
    if stdin is not None:
        query.append(('stdin', 'true'))
    url = f'http://127.0.0.1:{port}{PODS}/{pod}/exec?{urllib.parse.urlencode(query)}'
    out = {1: b'', 2: b''}
    status = None
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=protocols) as ws:
            if stdin is not None:
                await ws.send_bytes(b'\x00' + stdin)
                await ws.send_bytes(b'\xff\x00')
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.BINARY
                channel, data = msg.data[0], msg.data[1:]
                if channel in out:
                    out[channel] += data
                elif channel == 3 and data:
                    status = json.loads(data)
            protocol = ws.protocol
    return out[1].decode(), out[2].decode(), status, protocol


def test_exec_handshake_is_what_kube_rs_verifies(api):
    key = base64.b64encode(os.urandom(16)).decode()
    conn = http.client.HTTPConnection('127.0.0.1', api.port, timeout=10)
    conn.request('GET', f'{PODS}/{POD}/exec?command=true&stdout=true&stderr=true', headers={
        'Connection': 'Upgrade', 'Upgrade': 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': key,
        'Sec-WebSocket-Protocol': 'v5.channel.k8s.io, v4.channel.k8s.io'})
    resp = conn.getresponse()
    assert resp.status == 101
    assert resp.getheader('Upgrade').lower() == 'websocket'
    assert resp.getheader('Connection').lower() == 'upgrade'
    expected = base64.b64encode(hashlib.sha1((key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest())
    assert resp.getheader('Sec-WebSocket-Accept') == expected.decode()
    assert resp.getheader('Sec-WebSocket-Protocol') == 'v5.channel.k8s.io'
    conn.close()


def test_exec_scripted_commands(api):
    stdout, stderr, status, protocol = asyncio.run(_exec(api.port, POD, ['alembic', 'current']))
    assert protocol == 'v5.channel.k8s.io'
    assert '3c9e1f2a7b4d (head)' in stdout and stderr.startswith('INFO') is False
    assert status == {'metadata': {}, 'status': 'Success'}
    stdout, _, status, _ = asyncio.run(_exec(api.port, POD, ['alembic', 'downgrade', '9a1b2c3d4e5f']))
    assert 'Running downgrade 3c9e1f2a7b4d -> 9a1b2c3d4e5f' in stdout and status['status'] == 'Success'
    stdout, _, status, _ = asyncio.run(_exec(api.port, POD, ['sh', '-c', 'alembic current'],
                                             protocols=('v4.channel.k8s.io',)))
    assert '(head)' in stdout and status['status'] == 'Success'


def test_exec_failures_carry_the_exit_code(api):
    _, stderr, status, _ = asyncio.run(_exec(api.port, POD, ['no-such-tool', '--flag']))
    assert 'not found' in stderr
    assert status['status'] == 'Failure' and status['reason'] == 'NonZeroExitCode'
    assert status['details']['causes'] == [{'reason': 'ExitCode', 'message': '127'}]
    _, _, status, _ = asyncio.run(_exec(api.port, POD, ['false']))
    assert status['details']['causes'][0]['message'] == '1'


def test_exec_rules_from_the_control_endpoint_and_the_exec_log(api):
    api.ok('DELETE', '/_emulator/exec-log')
    api.ok('PUT', f'/_emulator/pods/{NS}/{POD}/exec', {
        'rules': [{'argv_prefix': ['psql'], 'stdout': 'got: {stdin}', 'exit_code': 0}],
        'default': {'stderr': 'boom\n', 'exit_code': 3}})
    stdout, _, status, _ = asyncio.run(_exec(api.port, POD, ['psql', '-c'], stdin=b'select 1;'))
    assert stdout == 'got: select 1;' and status['status'] == 'Success'
    _, stderr, status, _ = asyncio.run(_exec(api.port, POD, ['anything']))
    assert stderr == 'boom\n' and status['details']['causes'][0]['message'] == '3'
    log = api.ok('GET', '/_emulator/exec-log')['items']
    assert [(e['pod'], e['command'], e['exitCode']) for e in log] == [
        (POD, ['psql', '-c'], 0), (POD, ['anything'], 3)]
    assert log[0]['stdin'] == 'select 1;' and log[0]['container'] == 'backend'


def test_exec_into_a_pod_that_is_not_running_is_refused(api):
    api.ok('PATCH', f'{PODS}/{POD}/status', {'status': {'phase': 'Succeeded'}}, content_type=MERGE)
    status, body, _ = api.get(f'{PODS}/{POD}/exec', query={'command': 'true', 'stdout': 'true'},
                              headers={'Connection': 'Upgrade', 'Upgrade': 'websocket',
                                       'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ=='})
    assert (status, body['reason']) == (400, 'BadRequest')


# -------------------------------------------------------------------- watch

def test_watch_from_a_resource_version_sends_only_later_events(api):
    rv = api.ok('GET', CMS)['metadata']['resourceVersion']
    api.ok('POST', CMS, {'metadata': {'name': 'w1'}})
    api.ok('PATCH', f'{CMS}/w1', {'data': {'k': 'v'}}, content_type=MERGE)
    api.ok('DELETE', f'{CMS}/w1')
    api.ok('POST', f'/api/v1/namespaces/{NS}/secrets', {'metadata': {'name': 'not-a-configmap'}})
    events = api.watch(CMS, {'resourceVersion': rv, 'timeoutSeconds': 1})
    assert [(e['type'], e['object']['metadata']['name']) for e in events] == [
        ('ADDED', 'w1'), ('MODIFIED', 'w1'), ('DELETED', 'w1')]
    rvs = [int(e['object']['metadata']['resourceVersion']) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    assert events[0]['object']['kind'] == 'ConfigMap'


def test_watch_without_resource_version_starts_with_current_state(api):
    events = api.watch(PODS, {'timeoutSeconds': 1})
    assert [e['type'] for e in events] == ['ADDED'] * 3


def test_watch_selectors_and_bookmarks(api):
    rv = api.ok('GET', PODS)['metadata']['resourceVersion']
    api.ok('PATCH', f'{PODS}/{POD}', {'metadata': {'labels': {'app': 'moved-away'}}}, content_type=MERGE)
    api.ok('PATCH', f'{PODS}/elson-backend-6d8f7c9b5d-8rtwn', {'metadata': {'labels': {'extra': '1'}}},
           content_type=MERGE)
    query = {'resourceVersion': rv, 'labelSelector': 'app=elson-backend', 'timeoutSeconds': 1}
    plain = api.watch(PODS, query)
    # Leaving the selector looks like a deletion to the watcher.
    assert [(e['type'], e['object']['metadata']['name']) for e in plain] == [
        ('DELETED', POD), ('MODIFIED', 'elson-backend-6d8f7c9b5d-8rtwn')]
    with_bookmarks = api.watch(PODS, dict(query, allowWatchBookmarks='true'))
    bookmarks = [e for e in with_bookmarks if e['type'] == 'BOOKMARK']
    assert bookmarks, 'a watch that allows bookmarks gets them'
    assert bookmarks[-1]['object']['kind'] == 'Pod' and bookmarks[-1]['object']['apiVersion'] == 'v1'
    assert bookmarks[-1]['object']['metadata']['resourceVersion'].isdigit()
    by_field = api.watch(PODS, {'resourceVersion': rv, 'fieldSelector': f'metadata.name={POD}', 'timeoutSeconds': 1})
    assert [e['type'] for e in by_field] == ['MODIFIED']


def test_watch_with_initial_events(api):
    events = api.watch(PODS, {'sendInitialEvents': 'true', 'resourceVersionMatch': 'NotOlderThan',
                              'allowWatchBookmarks': 'true', 'timeoutSeconds': 1})
    assert [e['type'] for e in events[:4]] == ['ADDED'] * 3 + ['BOOKMARK']
    assert events[3]['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}


def test_watch_timeout_is_honoured(api):
    started = time.monotonic()
    api.watch(CMS, {'resourceVersion': api.ok('GET', CMS)['metadata']['resourceVersion'], 'timeoutSeconds': 1})
    assert 0.8 < time.monotonic() - started < 5


def test_watch_from_before_a_reset_is_gone(api):
    rv = api.ok('GET', CMS)['metadata']['resourceVersion']
    api.ok('POST', '/_emulator/reset')
    events = api.watch(CMS, {'resourceVersion': rv, 'timeoutSeconds': 1})
    assert [(e['type'], e['object']['code'], e['object']['reason']) for e in events] == [('ERROR', 410, 'Expired')]


# ------------------------------------------------------------------- delete

def test_delete_answers_like_a_real_server(api):
    gone = api.ok('DELETE', f'{CMS}/backend-config')
    assert gone['kind'] == 'Status' and gone['status'] == 'Success'
    assert gone['details']['name'] == 'backend-config'
    pod = api.ok('DELETE', f'{PODS}/{POD}')
    assert pod['kind'] == 'Pod' and pod['metadata']['deletionTimestamp']
    assert api.get(f'{PODS}/{POD}')[0] == 404
    status, body, _ = api.request('DELETE', f'{PODS}/{POD}')
    assert (status, body['reason']) == (404, 'NotFound')


def test_deleting_a_deployment_removes_its_replicasets_and_pods(api):
    api.ok('DELETE', DEPLOY, {'propagationPolicy': 'Foreground'})
    assert api.ok('GET', f'/apis/apps/v1/namespaces/{NS}/replicasets')['items'] == []
    assert api.ok('GET', PODS)['items'] == []
    assert api.get(f'{CMS}/backend-config')[0] == 200


def test_orphaning_keeps_dependents(api):
    api.ok('DELETE', DEPLOY, query={'propagationPolicy': 'Orphan'})
    replicasets = api.ok('GET', f'/apis/apps/v1/namespaces/{NS}/replicasets')['items']
    assert len(replicasets) == 2
    assert all('ownerReferences' not in rs['metadata'] for rs in replicasets)
    assert len(api.ok('GET', PODS)['items']) == 3


def test_delete_collection_eviction_and_namespace_deletion(api):
    deleted = api.ok('DELETE', CMS, {}, query={'labelSelector': 'app=elson-backend'})
    assert deleted['kind'] == 'ConfigMapList' and names(deleted) == ['backend-config']
    assert api.get(f'{CMS}/backend-config')[0] == 404
    eviction = {'apiVersion': 'policy/v1', 'kind': 'Eviction', 'metadata': {'name': POD, 'namespace': NS}}
    status, body, _ = api.request('POST', f'{PODS}/{POD}/eviction', eviction)
    assert (status, body['status']) == (201, 'Success')
    assert api.get(f'{PODS}/{POD}')[0] == 404
    namespace = api.ok('DELETE', f'/api/v1/namespaces/{NS}')
    assert namespace['kind'] == 'Namespace' and namespace['status']['phase'] == 'Terminating'
    assert api.get(DEPLOY)[0] == 404 and api.ok('GET', '/api/v1/pods')['items'] == []


def test_finalizers_hold_deletion_back(api):
    api.ok('POST', CMS, {'metadata': {'name': 'held', 'finalizers': ['example.com/hold']}})
    marked = api.ok('DELETE', f'{CMS}/held')
    assert marked['metadata']['deletionTimestamp']
    assert api.get(f'{CMS}/held')[0] == 200
    api.ok('PATCH', f'{CMS}/held', {'metadata': {'finalizers': None}}, content_type=MERGE)
    assert api.get(f'{CMS}/held')[0] == 404


# ------------------------------------------------------------ access review

def _review(api, verb, resource, namespace=NS, subresource=None):
    body = {'apiVersion': 'authorization.k8s.io/v1', 'kind': 'SelfSubjectAccessReview',
            'spec': {'resourceAttributes': {'verb': verb, 'resource': resource, 'namespace': namespace,
                                            'group': 'apps' if resource == 'deployments' else '',
                                            **({'subresource': subresource} if subresource else {})}}}
    status, review, _ = api.request('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', body)
    assert status == 201 and review['kind'] == 'SelfSubjectAccessReview'
    return review['status']['allowed']


def test_self_subject_access_review_follows_the_rules(api):
    assert _review(api, 'delete', 'pods') is True  # the fixture allows everything
    api.ok('PUT', '/_emulator/access', {'default': 'deny', 'rules': [
        {'verbs': ['get', 'list', 'watch'], 'resources': ['pods', 'pods/log', 'deployments'], 'namespaces': [NS]},
        {'verbs': ['patch'], 'resources': ['deployments'], 'groups': ['apps'], 'namespaces': [NS]},
    ]})
    assert _review(api, 'list', 'pods') is True
    assert _review(api, 'get', 'pods', subresource='log') is True
    assert _review(api, 'create', 'pods', subresource='exec') is False
    assert _review(api, 'patch', 'deployments') is True
    assert _review(api, 'delete', 'deployments') is False
    assert _review(api, 'list', 'pods', namespace='kube-system') is False
    assert api.ok('GET', '/_emulator/access')['default'] == 'deny'


# ------------------------------------------------------------------ control

def test_fixture_and_reset_endpoints(api):
    loaded = api.ok('POST', '/_emulator/fixture', [
        {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'extra'}},
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'x', 'namespace': 'extra'}, 'data': {}},
    ])['loaded']
    assert loaded == ['Namespace/extra', 'ConfigMap/extra/x']
    assert api.get('/api/v1/namespaces/extra/configmaps/x')[0] == 200
    api.ok('POST', '/_emulator/reset')
    assert api.get('/api/v1/namespaces/extra')[0] == 404
    assert api.get(DEPLOY)[0] == 200  # the start-up fixture is back
    api.ok('POST', '/_emulator/reset', query={'empty': 'true'})
    assert api.get(DEPLOY)[0] == 404
    assert names(api.ok('GET', '/api/v1/namespaces')) == ['default', 'kube-node-lease', 'kube-public', 'kube-system']


def test_request_log_shows_what_a_client_sent(api):
    api.ok('PATCH', DEPLOY, {'spec': {'replicas': 2}}, content_type=MERGE, query={'dryRun': 'All'})
    last = api.ok('GET', '/_emulator/requests')['items'][-1]
    assert last['method'] == 'PATCH' and last['path'] == DEPLOY
    assert ['dryRun', 'All'] in last['query'] and last['contentType'] == MERGE
    assert last['body'] == {'spec': {'replicas': 2}}
