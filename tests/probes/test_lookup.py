"""One resolution per probe, and no connection to an address that is not public."""

from __future__ import annotations

import ipaddress

import pytest

from monitor.probes.lookup import NotResolved, PrivateAddress, Resolver, forbidden


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "0.0.0.0",
        "192.0.2.1",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # cloud metadata over IPv6
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_not(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


async def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    resolver = Resolver()
    try:
        found = await resolver.addresses("127.0.0.1", 443)
        assert found == [ipaddress.ip_address("127.0.0.1")]
        with pytest.raises(PrivateAddress):
            await resolver.public("127.0.0.1", 443, allow_private=False)
        assert await resolver.public("127.0.0.1", 443, allow_private=True) == found
        with pytest.raises(PrivateAddress):
            await resolver.public("localhost", 443, allow_private=False)
        with pytest.raises(NotResolved):
            await resolver.addresses("no-such-shop.invalid", 443)
    finally:
        resolver.close()
