import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered in pyproject.toml by the tests' own configuration; here too, so this folder runs alone.
    config.addinivalue_line("markers", "stack: starts a whole local stack or gunicorn services as processes")
