"""Fixtures of the AtHoc client's integration tests (tests/integration/athoc_support.py), for every module here."""

from tests.integration.athoc_support import clean_environment, fake_time, make_client, make_sim, sim  # noqa: F401
