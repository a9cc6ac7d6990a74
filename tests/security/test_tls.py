"""TLS: the server speaks HTTPS; a device trusts the CA it was provisioned with, and only it."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from edgeloop.agent import Agent
from edgeloop.hardware import load_target
from security.conftest import tls_server_context


def _agent(state, provisioning) -> Agent:
    return Agent(
        None, state, profile=load_target("rpi4"), poll_interval_s=1.0, provisioning=provisioning
    )


@pytest.mark.slow
def test_agent_refuses_a_mitm_with_another_cas_certificate(
    tls_fleet_server, mitm, rogue_ca, tmp_path
):
    tls_fleet_server.publish("kws", 1, scale=1.0)
    proxy = mitm(
        tls_fleet_server.url,
        upstream_verify=tls_fleet_server.verify,
        server_context=tls_server_context(rogue_ca),  # valid for 127.0.0.1, wrong CA
    )
    image = dataclasses.replace(tls_fleet_server.provision(), server_url=proxy.url)

    agent = _agent(tmp_path / "dev", image)
    agent.poll_sync()

    assert "CERTIFICATE_VERIFY_FAILED" in (agent.poll_error or "")
    assert agent.identity is None and agent.model is None
    assert proxy.seen == []  # the handshake failed: not one request reached the proxy


@pytest.mark.slow
def test_pinned_ca_is_the_only_one_trusted(tls_fleet_server, tmp_path, rogue_ca):
    """A provisioning file with another CA cannot talk to the real server either."""
    tls_fleet_server.publish("kws", 1, scale=1.0)
    wrong = dataclasses.replace(tls_fleet_server.provision(), ca_pem=rogue_ca.ca_pem.read_text())
    right = tls_fleet_server.provision()

    refused = _agent(tmp_path / "a", wrong)
    refused.poll_sync()
    served = _agent(tmp_path / "b", right)
    served.poll_sync()

    assert "CERTIFICATE_VERIFY_FAILED" in (refused.poll_error or "")
    assert served.poll_error is None and served.model is not None and served.model.version == 1
    with pytest.raises(httpx.ConnectError):  # nor does the system's trust store know the CA
        httpx.get(tls_fleet_server.url + "/healthz")


def test_server_needs_both_tls_files(cli, tmp_path, test_ca):
    r = cli("server", "--data", str(tmp_path / "d"), "--tls-cert", str(test_ca.cert_pem))

    assert r.returncode != 0
    assert "--tls-cert and --tls-key go together" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_provisioning_with_a_ca_needs_https():
    from edgeloop.errors import InputError
    from edgeloop.protocol import Provisioning

    with pytest.raises(InputError, match="a CA is pinned, so expected https://"):
        Provisioning.from_dict(
            {
                "server_url": "http://127.0.0.1:1",
                "tuf_root": {},
                "director_key": {},
                "director_keyid": "00",
                "ca_pem": "-----BEGIN CERTIFICATE-----\n",
            }
        )
