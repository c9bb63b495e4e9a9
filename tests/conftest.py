"""Shared fixtures. Tests that need the real data skip, with the reason, when it is absent."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from karyohf.data import DataNotFoundError, data_root  # noqa: E402


@pytest.fixture(scope="session")
def real_data_root():
    try:
        return data_root()
    except DataNotFoundError as error:
        pytest.skip(f"real data not available: {error}")
