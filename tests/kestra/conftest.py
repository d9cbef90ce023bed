from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.kestra import twin

APPS = ROOT / "k8s" / "apps" / "production"
INFRASTRUCTURE = ROOT / "k8s" / "infrastructure" / "production"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    with twin.traversable_tmp("kestra-twin-") as path:
        yield path


@pytest.fixture(scope="session")
def flux_objects() -> list[dict[str, Any]]:
    """What Flux applies for the apps and infrastructure paths of production."""
    return twin.kustomize(APPS) + twin.kustomize(INFRASTRUCTURE)
