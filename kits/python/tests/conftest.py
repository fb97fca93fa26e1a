from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import KEY, Service, make_client

from keystead_client import Client


@pytest.fixture
def service() -> Iterator[Service]:
    running = Service()
    yield running
    running.stop()


@pytest.fixture
def activated(service: Service) -> Client:
    client = make_client(service)
    client.activate(KEY)
    return client
