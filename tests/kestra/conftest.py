from __future__ import annotations

import shutil
import tempfile
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
    """A temp dir other users can traverse (pytest's tmp_path is 0700): the sync Job
    runs as uid 1000."""
    path = Path(tempfile.mkdtemp(prefix="kestra-twin-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def flux_objects() -> list[dict[str, Any]]:
    """What Flux applies for the apps and infrastructure paths of production."""
    return twin.kustomize(APPS) + twin.kustomize(INFRASTRUCTURE)
