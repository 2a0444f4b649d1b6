"""Fixtures for the engine's tests against lambdakit local.

- `go(function, records, **kwargs) -> RunResult`: lambdakit.run bound to the session's local
  service, with a per-test cache folder and no progress bar (both can be overridden).
"""

from __future__ import annotations

import pytest

import lambdakit


@pytest.fixture
def go(local_lambda, tmp_path):
    """lambdakit.run bound to the local service, a per-test cache, and no progress bar."""

    def call(function, records, **kwargs):
        kwargs.setdefault("cache", tmp_path / "cache")
        kwargs.setdefault("progress", False)
        return lambdakit.run(function, records, endpoint_url=local_lambda.endpoint_url, **kwargs)

    return call
