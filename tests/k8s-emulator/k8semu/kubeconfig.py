"""A kubeconfig pointing at the emulator, for kube-rs, kubectl or any client."""
import os
import pathlib

import yaml

DEFAULT_TOKEN = 'emulator-token'


def kubeconfig(port: int, *, host: str = '127.0.0.1', token: str = DEFAULT_TOKEN,
               namespace: str | None = None) -> dict:
    context: dict = {'cluster': 'emulator', 'user': 'emulator'}
    if namespace:
        context['namespace'] = namespace
    return {
        'apiVersion': 'v1',
        'kind': 'Config',
        'preferences': {},
        'clusters': [{'name': 'emulator', 'cluster': {'server': f'http://{host}:{port}'}}],
        # The emulator accepts any credentials; the token is there because
        # clients expect a user entry with some means of authentication.
        'users': [{'name': 'emulator', 'user': {'token': token}}],
        'contexts': [{'name': 'emulator', 'context': context}],
        'current-context': 'emulator',
    }


def write_kubeconfig(path: str | os.PathLike, port: int, **kwargs) -> pathlib.Path:
    """Write the kubeconfig atomically, so a reader never sees half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + '.tmp')
    scratch.write_text(yaml.safe_dump(kubeconfig(port, **kwargs), sort_keys=False))
    os.chmod(scratch, 0o600)
    scratch.replace(path)
    return path
