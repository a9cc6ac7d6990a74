"""The tests' certificate authority: ``edgeloop.demo.make_local_ca`` (``cryptography``).

Tests run the fleet server over TLS with it (``edgeloop server --tls-cert --tls-key``) and
provision agents with the CA; a second, unrelated CA plays the attacker's.
"""

from __future__ import annotations

from pathlib import Path

from edgeloop.demo import LocalCA, make_local_ca

TestCA = LocalCA


def make_ca(directory: Path, name: str = "edgeloop test CA") -> LocalCA:
    return make_local_ca(directory, name)
