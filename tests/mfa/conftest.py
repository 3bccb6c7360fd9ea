"""The demo person of the protocol tests, for the factor tests."""

from tests.idp.conftest import make_person  # noqa: F401 - a fixture, used by name
