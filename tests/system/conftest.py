"""Fixtures shared by the system tests."""

from tests.system.spec_network import spec_network

__all__ = ["spec_network"]
