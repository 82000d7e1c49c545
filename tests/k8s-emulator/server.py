#!/usr/bin/env python3
"""
Run the Kubernetes API emulator on loopback.

    python tests/k8s-emulator/server.py --port 0 --fixture tests/k8s-emulator/fixtures/elson.yaml \
        --kubeconfig /tmp/emulator.kubeconfig

Prints exactly one line, `LISTENING <port>`, on stdout once requests can be
served, then serves until SIGTERM or SIGINT. Everything else goes to stderr.
"""
import argparse
import asyncio
import json
import pathlib
import signal
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kmock  # noqa: E402
import yaml  # noqa: E402

from k8semu import ClusterEmulator, write_kubeconfig  # noqa: E402
from k8semu.kubeconfig import DEFAULT_TOKEN  # noqa: E402


def read_fixture(path: pathlib.Path) -> list:
    text = path.read_text(encoding='utf-8')
    if path.suffix == '.json':
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Kubernetes API emulator for tests (loopback only).')
    parser.add_argument('--port', type=int, default=0, help='TCP port on 127.0.0.1; 0 picks a free one')
    parser.add_argument('--fixture', action='append', default=[], type=pathlib.Path,
                        help='YAML or JSON file of objects to load at start (and on reset); repeatable')
    parser.add_argument('--kubeconfig', type=pathlib.Path,
                        help='write a kubeconfig for this server here (cluster/context "emulator")')
    parser.add_argument('--namespace', help='default namespace of the kubeconfig context')
    parser.add_argument('--token', default=DEFAULT_TOKEN, help='bearer token written into the kubeconfig')
    parser.add_argument('--bookmark-interval', type=float, default=5.0,
                        help='seconds between BOOKMARK events on watches that allow them')
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    documents: list = []
    for path in args.fixture:
        documents.extend(read_fixture(path))
    emulator = ClusterEmulator(startup_documents=documents, bookmark_interval=args.bookmark_interval)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with emulator, kmock.Server(emulator, host='127.0.0.1', port=args.port or None) as server:
        if args.kubeconfig:
            write_kubeconfig(args.kubeconfig, server.port, token=args.token, namespace=args.namespace)
        print(f'LISTENING {server.port}', flush=True)
        await stop.wait()
        emulator.close_streams()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
