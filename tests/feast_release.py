"""The installed Feast release, for tests of what only some releases have
(``make test-feast-versions`` runs the suites under each supported one)."""

from __future__ import annotations

import feast
import pytest

from feast_redis_rs import _feast


def needs_feast(minor: int, what: str) -> pytest.MarkDecorator:
    """Skips a test of ``what``, which Feast 0.``minor`` brought, under older releases
    (reported as skipped, with the reason)."""
    return pytest.mark.skipif(
        _feast.FEAST < (0, minor),
        reason=f"{what} arrived in Feast 0.{minor}; Feast {feast.__version__} is installed",
    )
