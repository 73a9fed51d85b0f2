"""The built-in agents' fetches: loopback, private, metadata and the like refused unless PLANEXE_FETCH_ALLOW says."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from planexe_ax.agents import TaskContext
from planexe_ax.agents.toolkit import analyze_website, web_scrape
from planexe_ax.common.egress import EgressRefused, FetchPolicy, refusal
from planexe_ax.config import Settings
from planexe_ax.errors import PermanentError
from tests.helpers.web_site import SiteHandler, serve_site


@pytest.fixture
def site() -> Iterator[str]:
    with serve_site() as url:
        yield url


REFUSED = {
    "127.0.0.1": "loopback",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback",
    "10.1.2.3": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "169.254.1.1": "link-local",
    "100.64.0.1": "CGNAT",
    "224.0.0.1": "multicast",
    "0.0.0.0": "",
    "240.0.0.1": "",
}


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_local_and_private_addresses_are_refused(address: str) -> None:
    why = refusal(ipaddress.ip_address(address))
    assert why is not None
    assert REFUSED[address] in why


def test_public_addresses_pass() -> None:
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_hosts_host_ports_and_cidrs() -> None:
    policy = FetchPolicy.parse(["intranet.example", "localhost:8080", "10.0.0.0/8", "[::1]:9000", " "])
    assert policy.names("Intranet.Example.", 443)
    assert policy.names("localhost", 8080)
    assert not policy.names("localhost", 8081)
    assert policy.names("::1", 9000)
    assert policy.covers(ipaddress.ip_address("10.9.8.7"))
    assert not policy.covers(ipaddress.ip_address("192.168.0.1"))
    with pytest.raises(PermanentError, match="PLANEXE_FETCH_ALLOW entry 'host:http'"):
        FetchPolicy.parse(["host:http"])


def _ctx(tmp_path: Path, allow: list[str]) -> TaskContext:
    return TaskContext("exec1", "t1", "s1", 1, "tester", Settings(data_dir=tmp_path / "data", fetch_allow=allow))


async def test_a_fetch_of_loopback_is_refused_and_the_server_sees_no_request(site: str, tmp_path: Path) -> None:
    before = len(SiteHandler.requests)
    for cap, params in ((web_scrape, {"url": f"{site}/good"}), (analyze_website, {"url": f"{site}/good"})):
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1: a loopback address; list it in PLANEXE_FETCH_ALLOW"):
            await cap(cap.params_model.model_validate(params), _ctx(tmp_path, []))
    named = site.replace("127.0.0.1", "localhost")
    with pytest.raises(EgressRefused, match=r"localhost \(127\.0\.0\.1\): a loopback address"):
        await web_scrape(web_scrape.params_model(url=f"{named}/good"), _ctx(tmp_path, []))
    assert len(SiteHandler.requests) == before, "refused before connecting"


async def test_a_redirect_to_a_private_address_is_refused(site: str, tmp_path: Path) -> None:
    port = site.rsplit(":", 1)[1]
    ctx = _ctx(tmp_path, [f"127.0.0.1:{port}"])
    ok = await web_scrape(web_scrape.params_model(url=f"{site}/redirect?to=/good"), ctx)
    assert isinstance(ok, dict)
    assert ok["title"] == "Marie's Yorkies", "a redirect within the allowed host is followed"
    for target, why in (
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.1.2.3/", "private"),
    ):
        with pytest.raises(EgressRefused, match=why):
            await web_scrape(web_scrape.params_model(url=f"{site}/redirect?to={target}"), ctx)
    with pytest.raises(PermanentError, match="must start with http"):
        await web_scrape(web_scrape.params_model(url=f"{site}/redirect?to=file:///etc/passwd"), ctx)
