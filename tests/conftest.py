"""Session-wide real services (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services import Broker, Postgres, start_broker, start_postgres

# the chains (devchain, anvil, evm_chain fixtures) for every test folder
pytest_plugins = ("tests.chain_support",)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    service = start_postgres()
    yield service
    service.close()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    service = start_broker()
    yield service
    service.close()


@pytest.fixture
def database(postgres: Postgres) -> str:
    """The DSN of a fresh, empty database."""
    return postgres.create_database()
