"""
What a kubelet would answer for a pod: its logs and the commands run in it.

kmock has no notion of either: `pods/log` and `pods/exec` are served as the
pod object itself (JSON where text or a WebSocket is expected). Here each pod
gets scripted behaviour from the fixture or the control endpoints:

* logs: text per container (and optionally for the previous container);
* exec: rules `{argv_prefix, stdout, stderr, exit_code}` tried in order, then
  a default, then exit code 127 as a shell would for an unknown command.

Every exec is recorded so a test can assert what a tool ran in a pod.
"""
import asyncio
import dataclasses
import datetime
import json
import shlex
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import aiohttp.web

from .errors import bad_request
from .selectors import match_label_selector

SHELLS = {'sh', 'bash', '/bin/sh', '/bin/bash', '/usr/bin/sh', '/usr/bin/bash', 'ash', '/bin/ash'}
# Subprotocols of the exec stream, newest first. v4 and v5 carry a JSON
# `Status` on the error channel; v5 adds a "close this channel" frame (255).
PROTOCOLS = ('v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io')
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# How long to wait for a client that asked for stdin to finish sending it.
STDIN_TIMEOUT = 5.0


@dataclasses.dataclass
class ExecRule:
    argv_prefix: list[str]
    stdout: str = ''
    stderr: str = ''
    exit_code: int = 0
    container: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> 'ExecRule':
        if not isinstance(data, Mapping):
            raise bad_request(f'an exec rule must be an object, got {data!r}')
        prefix = data.get('argv_prefix', data.get('argvPrefix', []))
        if isinstance(prefix, str):
            prefix = shlex.split(prefix)
        return cls(argv_prefix=[str(p) for p in prefix], stdout=str(data.get('stdout', '')),
                   stderr=str(data.get('stderr', '')),
                   exit_code=int(data.get('exit_code', data.get('exitCode', 0))),
                   container=data.get('container'))

    def as_dict(self) -> dict[str, Any]:
        return {'argv_prefix': self.argv_prefix, 'stdout': self.stdout, 'stderr': self.stderr,
                'exit_code': self.exit_code, 'container': self.container}

    def render(self, argv: list[str], stdin: str) -> tuple[str, str]:
        """Fill `{args}` (the words after the prefix), `{argv}` and `{stdin}`."""
        rest = ' '.join(argv[len(self.argv_prefix):])
        values = {'{args}': rest, '{argv}': ' '.join(argv), '{stdin}': stdin}

        def fill(text: str) -> str:
            for token, value in values.items():
                text = text.replace(token, value)
            return text
        return fill(self.stdout), fill(self.stderr)


@dataclasses.dataclass
class PodBehavior:
    """Scripted behaviour for pods matched by name or by labels in one namespace."""
    namespace: str
    name: str | None = None
    selector: dict[str, str] | None = None
    logs: dict[str, str] | None = None           # container -> text; '*' for any container
    previous_logs: dict[str, str] | None = None
    rules: list[ExecRule] = dataclasses.field(default_factory=list)
    default: ExecRule | None = None

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> 'PodBehavior':
        meta = doc.get('metadata') or {}
        spec = doc.get('spec') or doc
        exec_spec = spec.get('exec') or {}
        selector = spec.get('selector')
        if isinstance(selector, Mapping) and 'matchLabels' in selector:
            selector = selector['matchLabels']
        default = exec_spec.get('default')
        return cls(namespace=meta.get('namespace') or spec.get('namespace') or 'default',
                   name=spec.get('podName') or (None if selector else meta.get('name')),
                   selector=dict(selector) if selector else None,
                   logs=_per_container(spec.get('logs')),
                   previous_logs=_per_container(spec.get('previousLogs')),
                   rules=[ExecRule.parse(r) for r in exec_spec.get('rules') or []],
                   default=ExecRule.parse(dict(default, argv_prefix=[])) if default else None)

    def matches(self, pod: Mapping[str, Any]) -> bool:
        meta = pod.get('metadata') or {}
        if meta.get('namespace') != self.namespace:
            return False
        if self.name is not None:
            return meta.get('name') == self.name
        return match_label_selector({'matchLabels': self.selector or {}}, meta.get('labels') or {})

    def as_dict(self) -> dict[str, Any]:
        return {'namespace': self.namespace, 'podName': self.name, 'selector': self.selector,
                'logs': self.logs, 'previousLogs': self.previous_logs,
                'exec': {'rules': [r.as_dict() for r in self.rules],
                         'default': self.default.as_dict() if self.default else None}}


def _per_container(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {'*': value}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    raise bad_request(f'logs must be a string or a map of container to text, got {value!r}')


def _shell_words(argv: list[str]) -> list[str] | None:
    """`sh -c "alembic current"` runs `alembic current`: match rules against that too."""
    if len(argv) >= 3 and argv[0] in SHELLS and argv[1] in ('-c', '-lc', '-ec'):
        try:
            return shlex.split(argv[2])
        except ValueError:
            return None
    return None


@dataclasses.dataclass
class PodScripts:
    """All pod behaviours; the latest added for a pod is consulted first."""
    behaviors: list[PodBehavior] = dataclasses.field(default_factory=list)

    def add(self, behavior: PodBehavior) -> None:
        self.behaviors.append(behavior)

    def for_pod(self, pod: Mapping[str, Any]) -> list[PodBehavior]:
        matching = [b for b in reversed(self.behaviors) if b.matches(pod)]
        # Name-specific behaviour outranks behaviour given by labels.
        return [b for b in matching if b.name] + [b for b in matching if not b.name]

    def set_logs(self, namespace: str, pod: str, logs: Any, previous: Any = None) -> None:
        self.add(PodBehavior(namespace=namespace, name=pod, logs=_per_container(logs),
                             previous_logs=_per_container(previous)))

    def logs(self, pod: Mapping[str, Any], container: str, previous: bool) -> str | None:
        for behavior in self.for_pod(pod):
            table = behavior.previous_logs if previous else behavior.logs
            if table is not None:
                if container in table:
                    return table[container]
                if '*' in table:
                    return table['*']
        return None

    def run(self, pod: Mapping[str, Any], container: str, argv: list[str], stdin: str) -> tuple[str, str, int]:
        candidates = [argv]
        if (inner := _shell_words(argv)) is not None:
            candidates.append(inner)
        behaviors = self.for_pod(pod)
        for behavior in behaviors:
            for rule in behavior.rules:
                if rule.container and rule.container != container:
                    continue
                for words in candidates:
                    if words[:len(rule.argv_prefix)] == rule.argv_prefix:
                        stdout, stderr = rule.render(words, stdin)
                        return stdout, stderr, rule.exit_code
        for behavior in behaviors:
            if behavior.default is not None:
                stdout, stderr = behavior.default.render(argv, stdin)
                return stdout, stderr, behavior.default.exit_code
        program = (candidates[-1] or ['sh'])[0]
        return '', f'sh: 1: {program}: not found\n', 127


def pod_containers(pod: Mapping[str, Any]) -> list[str]:
    return [c.get('name') for c in (pod.get('spec') or {}).get('containers') or []]


def pick_container(pod: Mapping[str, Any], wanted: str | None) -> str:
    """Resolve `?container=` the way the API server does, with its error texts."""
    name = (pod.get('metadata') or {}).get('name')
    names = pod_containers(pod)
    init_names = [c.get('name') for c in (pod.get('spec') or {}).get('initContainers') or []]
    if wanted:
        if wanted not in names and wanted not in init_names:
            raise bad_request(f'container {wanted} is not valid for pod {name}')
        return wanted
    default = ((pod.get('metadata') or {}).get('annotations') or {}).get('kubectl.kubernetes.io/default-container')
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    raise bad_request(f'a container name must be specified for pod {name}, choose one of: [{" ".join(names)}]')


def render_logs(text: str, *, tail_lines: int | None, since_seconds: int | None,
                timestamps: bool, limit_bytes: int | None, since_time: float | None = None) -> str:
    """Cut the configured log text like the kubelet cuts a container log.

    Lines have no recorded times, so they are taken to have been written one
    second apart, the last one just now; `sinceSeconds`, `sinceTime` and
    `timestamps` use those times. Lines that already start with an RFC 3339 time keep it.
    """
    lines = text.splitlines()
    now = time.time()
    stamped: list[tuple[float, str]] = []
    for index, line in enumerate(lines):
        moment = now - (len(lines) - 1 - index)
        first = line.split(' ', 1)[0]
        try:
            moment = datetime.datetime.fromisoformat(first.replace('Z', '+00:00')).timestamp()
        except ValueError:
            pass
        stamped.append((moment, line))
    if since_seconds is not None:
        stamped = [(t, line) for t, line in stamped if t >= now - since_seconds]
    elif since_time is not None:
        stamped = [(t, line) for t, line in stamped if t >= since_time]
    if tail_lines is not None:
        stamped = stamped[-tail_lines:] if tail_lines > 0 else []
    if timestamps:
        stamped = [(t, datetime.datetime.fromtimestamp(t, datetime.UTC).strftime('%Y-%m-%dT%H:%M:%S.%f000Z')
                    + ' ' + line) for t, line in stamped]
    result = ''.join(line + '\n' for _, line in stamped)
    if limit_bytes is not None:
        result = result.encode()[:limit_bytes].decode(errors='ignore')
    return result


def exit_status(exit_code: int, argv: list[str]) -> dict[str, Any]:
    """The `Status` sent on the error channel when the process ends."""
    if exit_code == 0:
        return {'metadata': {}, 'status': 'Success'}
    return {
        'metadata': {},
        'status': 'Failure',
        'message': f'command terminated with non-zero exit code: error executing command {argv}, '
                   f'exit code {exit_code}',
        'reason': 'NonZeroExitCode',
        'details': {'causes': [{'reason': 'ExitCode', 'message': str(exit_code)}]},
    }


async def serve_exec(raw: aiohttp.web.BaseRequest, pod: Mapping[str, Any], container: str,
                     scripts: PodScripts, exec_log: list[dict[str, Any]]) -> aiohttp.web.WebSocketResponse:
    """Run a scripted command over the Kubernetes channel protocol on a WebSocket."""
    query = raw.query
    argv = query.getall('command', [])
    want_stdin = query.get('stdin') in ('true', '1')
    # PodExecOptions default stdout and stderr to true (kube-rs relies on that
    # and only sends the parameters that are true).
    want_stdout = query.get('stdout', 'true') in ('true', '1')
    want_stderr = query.get('stderr', 'true') in ('true', '1')
    tty = query.get('tty') in ('true', '1')

    ws = aiohttp.web.WebSocketResponse(protocols=PROTOCOLS, autoping=True)
    await ws.prepare(raw)
    protocol = ws.ws_protocol or ''

    # A real server first sends one empty frame per channel it will write to;
    # kube-rs and client-go skip them, and they tell a client the stream is up.
    for channel, wanted in ((STDOUT, want_stdout), (STDERR, want_stderr and not tty), (ERROR, True)):
        if wanted:
            await ws.send_bytes(bytes([channel]))

    stdin = b''
    # Without v5 a client can only say "end of stdin" by closing the whole
    # socket, after which nothing could be sent back; so only wait on v5.
    if want_stdin and protocol == 'v5.channel.k8s.io':
        stdin = await _read_stdin(ws)

    stdin_text = stdin.decode(errors='replace')
    stdout, stderr, exit_code = scripts.run(pod, container, argv, stdin_text)
    if tty:
        stdout, stderr = stdout + stderr, ''
    meta = pod.get('metadata') or {}
    exec_log.append({
        'time': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'namespace': meta.get('namespace'), 'pod': meta.get('name'), 'container': container,
        'command': argv, 'stdin': stdin_text if want_stdin else None, 'tty': tty,
        'protocol': protocol, 'exitCode': exit_code, 'stdout': stdout, 'stderr': stderr,
    })

    try:
        if want_stdout and stdout:
            await _send_chunks(ws, STDOUT, stdout.encode())
        if want_stderr and stderr:
            await _send_chunks(ws, STDERR, stderr.encode())
        if protocol in ('v4.channel.k8s.io', 'v5.channel.k8s.io'):
            status = json.dumps(exit_status(exit_code, argv)).encode()
        else:
            status = (b'' if exit_code == 0 else f'command terminated with exit code {exit_code}'.encode())
        if status:
            await ws.send_bytes(bytes([ERROR]) + status)
        await ws.close()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass  # the client went away; the call is recorded all the same
    return ws


async def _send_chunks(ws: aiohttp.web.WebSocketResponse, channel: int, data: bytes) -> None:
    for start in range(0, len(data), 16384):
        await ws.send_bytes(bytes([channel]) + data[start:start + 16384])


async def _read_stdin(ws: aiohttp.web.WebSocketResponse) -> bytes:
    data = b''
    deadline = asyncio.get_running_loop().time() + STDIN_TIMEOUT
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return data
        try:
            msg = await ws.receive(timeout=remaining)
        except asyncio.TimeoutError:
            return data
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data:
            if msg.data[0] == STDIN:
                data += msg.data[1:]
            elif msg.data[0] == CLOSE and msg.data[1:2] == bytes([STDIN]):
                return data
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                          aiohttp.WSMsgType.ERROR):
            return data
