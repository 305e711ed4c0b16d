"""Shared fixtures."""

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray instance for every test that needs it: 2 CPUs, a small object store,
    no dashboard; always shut down. Executors find Ray initialized and leave it running."""
    ray = pytest.importorskip("ray")
    import logging

    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
                 logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
