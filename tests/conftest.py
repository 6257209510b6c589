"""Shared test fixtures. Tests run on 2 CPU cores: keep them small and single-threaded."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "totalcapture"


@pytest.fixture(scope="session")
def totalcapture_dir() -> Path:
    """The shared TotalCapture package (beside the repository, as in CI)."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip("../shared/data/totalcapture is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sports2d_video() -> Path:
    """The real Sports2D demo video (BSD-3), downloaded once by ``capture.samples`` and cached;
    tests that need it skip when it cannot be downloaded."""
    from capture.samples import SampleDownloadError, sample_video

    try:
        return sample_video("sports2d")
    except SampleDownloadError as err:
        pytest.skip(str(err))
