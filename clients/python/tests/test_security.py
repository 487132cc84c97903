"""TLS, mutual TLS and tokens against servers started with real certificates."""

from __future__ import annotations

import grpc
import polars as pl
import pytest

import polarway
from certs import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_args(certs, mutual: bool) -> list[str]:
    args = ["--tls-cert", str(certs["server_cert"]), "--tls-key", str(certs["server_key"])]
    return args + ["--tls-ca", str(certs["ca"])] if mutual else args


def roundtrip(c, name: str) -> None:
    df = pl.DataFrame({"symbol": ["BTC", "ETH"], "price": [50000, 3000]})
    assert c.health_check() == "OK"
    c.store(name, df)
    assert c.load(name).equals(df)


def test_tls(start_server, certs, name):
    server = start_server(*tls_args(certs, mutual=False))
    # the simple path: tls=True with a CA file, by IP and by host name (both in the certificate)
    with polarway.DistributedClient("127.0.0.1", server.port, tls=True, ca_cert=certs["ca"]) as c:
        roundtrip(c, name)
    with polarway.DistributedClient("localhost", server.port, ca_cert=str(certs["ca"])) as c:
        assert c.load(name).height == 2
    # grpc.ssl_channel_credentials as the guide shows
    creds = grpc.ssl_channel_credentials(root_certificates=certs["ca"].read_bytes())
    with polarway.DistributedClient("127.0.0.1", server.port, credentials=creds) as c:
        assert c.describe(name).rows == 2


def test_tls_refuses_plaintext_and_unknown_ca(start_server, certs, tmp_path, name):
    server = start_server(*tls_args(certs, mutual=False))
    with polarway.DistributedClient("127.0.0.1", server.port, retries=0, timeout=5) as c:
        with pytest.raises(polarway.Unavailable):
            c.health_check()
    other = make_certs(tmp_path / "other", ca_name="another CA")
    with polarway.DistributedClient("127.0.0.1", server.port, tls=True, ca_cert=other["ca"], retries=0, timeout=5) as c:
        with pytest.raises(polarway.Unavailable):
            c.health_check()


def test_mutual_tls(start_server, certs, name):
    server = start_server(*tls_args(certs, mutual=True))
    with polarway.DistributedClient(
        "127.0.0.1",
        server.port,
        tls=True,
        ca_cert=certs["ca"],
        client_cert=certs["client_cert"],
        client_key=certs["client_key"],
    ) as c:
        roundtrip(c, name)
    creds = grpc.ssl_channel_credentials(
        root_certificates=certs["ca"].read_bytes(),
        private_key=certs["client_key"].read_bytes(),
        certificate_chain=certs["client_cert"].read_bytes(),
    )
    with polarway.DistributedClient("localhost", server.port, credentials=creds) as c:
        assert c.load(name).height == 2


def test_mutual_tls_refuses_a_client_without_certificate(start_server, certs):
    server = start_server(*tls_args(certs, mutual=True))
    with polarway.DistributedClient("127.0.0.1", server.port, tls=True, ca_cert=certs["ca"], retries=0, timeout=5) as c:
        with pytest.raises(polarway.PolarwayError) as err:
            c.list()
    assert err.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED), err.value


async def test_async_mutual_tls_with_token(start_server, certs, name):
    server = start_server(*tls_args(certs, mutual=True), "--auth-token", "t0k")
    kw = dict(tls=True, ca_cert=certs["ca"], client_cert=certs["client_cert"], client_key=certs["client_key"])
    async with polarway.AsyncDistributedClient("localhost", server.port, auth_token="t0k", **kw) as c:
        await c.store(name, pl.DataFrame({"a": [1, 2, 3]}))
        assert (await c.load(name))["a"].to_list() == [1, 2, 3]
    async with polarway.AsyncDistributedClient("localhost", server.port, auth_token="nope", **kw) as c:
        with pytest.raises(polarway.Unauthenticated):
            await c.load(name)
        assert await c.health_check() == "OK"  # Health stays open for probes
