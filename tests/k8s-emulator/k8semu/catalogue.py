"""
The resource types the emulator serves, with the discovery facts of a real
1.33 API server (kind, scope, singular name, short names, verbs, subresources).

kmock guesses these facts from the plural name when it is not told them, and
its guesses (kind "Pods", no short names, no verbs) make kube-rs discovery and
`kubectl`-style name resolution fail. The table below is the single source of
truth: it is registered into kmock's own resource registry for discovery and
used by the request router to decide scope, list kinds and subresources.
"""
import dataclasses

# The verbs of an ordinary namespaced or cluster-scoped resource.
ALL_VERBS = ('create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch')
# Namespaces cannot be deleted as a collection.
NAMESPACE_VERBS = ('create', 'delete', 'get', 'list', 'patch', 'update', 'watch')
STATUS_VERBS = ('get', 'patch', 'update')


@dataclasses.dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None      # None: the parent's group and version
    version: str | None = None


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f'{self.kind}List'

    @property
    def qualified(self) -> str:
        """The name used in error messages: `deployments.apps`, `pods`."""
        return f'{self.plural}.{self.group}' if self.group else self.plural

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    def has_status(self) -> bool:
        return self.subresource('status') is not None


def _status(kind: str) -> Subresource:
    return Subresource('status', kind, STATUS_VERBS)


def _scale() -> Subresource:
    # Scale objects are served as autoscaling/v1 whatever the parent's group is.
    return Subresource('scale', 'Scale', STATUS_VERBS, group='autoscaling', version='v1')


def _rt(group, version, plural, kind, namespaced, short_names=(), verbs=ALL_VERBS,
        categories=(), status=False, extra=()) -> ResourceType:
    subs = ((_status(kind),) if status else ()) + tuple(extra)
    return ResourceType(group, version, plural, kind, namespaced, tuple(short_names),
                        tuple(verbs), tuple(categories), subs)


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    # core/v1
    _rt('', 'v1', 'namespaces', 'Namespace', False, ['ns'], NAMESPACE_VERBS, status=True,
        extra=[Subresource('finalize', 'Namespace', ('update',))]),
    _rt('', 'v1', 'nodes', 'Node', False, ['no'], status=True),
    _rt('', 'v1', 'pods', 'Pod', True, ['po'], categories=['all'], status=True, extra=[
        Subresource('log', 'Pod', ('get',)),
        Subresource('exec', 'PodExecOptions', ('create', 'get')),
        Subresource('eviction', 'Eviction', ('create',), group='policy', version='v1'),
    ]),
    _rt('', 'v1', 'services', 'Service', True, ['svc'], categories=['all'], status=True),
    _rt('', 'v1', 'configmaps', 'ConfigMap', True, ['cm']),
    _rt('', 'v1', 'secrets', 'Secret', True),
    _rt('', 'v1', 'events', 'Event', True, ['ev']),
    _rt('', 'v1', 'serviceaccounts', 'ServiceAccount', True, ['sa']),
    _rt('', 'v1', 'resourcequotas', 'ResourceQuota', True, ['quota'], status=True),
    _rt('', 'v1', 'limitranges', 'LimitRange', True, ['limits']),
    _rt('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', True, ['pvc'], status=True),
    # apps/v1
    _rt('apps', 'v1', 'deployments', 'Deployment', True, ['deploy'], categories=['all'],
        status=True, extra=[_scale()]),
    _rt('apps', 'v1', 'replicasets', 'ReplicaSet', True, ['rs'], categories=['all'],
        status=True, extra=[_scale()]),
    _rt('apps', 'v1', 'statefulsets', 'StatefulSet', True, ['sts'], categories=['all'],
        status=True, extra=[_scale()]),
    _rt('apps', 'v1', 'daemonsets', 'DaemonSet', True, ['ds'], categories=['all'], status=True),
    # autoscaling/v2
    _rt('autoscaling', 'v2', 'horizontalpodautoscalers', 'HorizontalPodAutoscaler', True,
        ['hpa'], categories=['all'], status=True),
    # policy/v1
    _rt('policy', 'v1', 'poddisruptionbudgets', 'PodDisruptionBudget', True, ['pdb'], status=True),
    # networking.k8s.io/v1
    _rt('networking.k8s.io', 'v1', 'ingresses', 'Ingress', True, ['ing'], status=True),
    _rt('networking.k8s.io', 'v1', 'networkpolicies', 'NetworkPolicy', True, ['netpol']),
    # batch/v1
    _rt('batch', 'v1', 'jobs', 'Job', True, categories=['all'], status=True),
    _rt('batch', 'v1', 'cronjobs', 'CronJob', True, ['cj'], categories=['all'], status=True),
    # authorization.k8s.io/v1: reviews are only ever created, never stored.
    _rt('authorization.k8s.io', 'v1', 'selfsubjectaccessreviews', 'SelfSubjectAccessReview',
        False, verbs=['create']),
)

# Field selectors a real server accepts, beyond metadata.name/metadata.namespace
# which every resource supports. Anything else is rejected with 400 like there.
FIELD_SELECTORS: dict[str, tuple[str, ...]] = {
    'pods': ('spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName',
             'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.nominatedNodeName'),
    'events': ('involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name',
               'involvedObject.uid', 'involvedObject.apiVersion', 'involvedObject.resourceVersion',
               'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type'),
    'secrets': ('type',),
    'namespaces': ('status.phase',),
    'nodes': ('spec.unschedulable',),
    'replicasets': ('status.replicas',),
    'jobs': ('status.successful',),
}


def by_path(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if rt.api_version == api_version and rt.kind == kind:
            return rt
    return None


def group_versions() -> dict[str, list[str]]:
    """Non-core groups and their versions, in a stable order."""
    groups: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group and rt.version not in groups.setdefault(rt.group, []):
            groups[rt.group].append(rt.version)
    return groups
