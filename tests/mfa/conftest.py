"""The demo person and registered apps of the protocol tests, for the factor tests."""

from tests.idp.conftest import make_client, make_person  # noqa: F401 - fixtures, used by name
