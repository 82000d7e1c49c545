"""A Kubernetes API emulator for the project's tests, built on kmock."""
from .cluster import ClusterEmulator
from .kubeconfig import write_kubeconfig

__all__ = ['ClusterEmulator', 'write_kubeconfig']
