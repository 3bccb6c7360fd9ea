"""Resource indicators (RFC 8707): which API an access token is for.

An API is registered as an app with ``protected_resource: true`` and names its
identifiers in ``resource_identifiers`` (absolute URIs, each held by one app only:
``directory.apps``). An app asks for tokens for it with the ``resource`` parameter, at the
authorization endpoint (one or more values; they are kept with the grant, in the code and
in every refresh token of the grant) and at the token endpoint. The access token's ``aud``
is then that identifier, so the API can refuse a token made for another API, and another
API cannot replay the token at it.

The rules chosen here, where RFC 8707 leaves the choice to the server:

- **One API per access token.** A token request names at most one ``resource``; when it
  names none, a grant of exactly one resource gives a token for that one, a grant of
  several is ``invalid_target`` (say which). A token for two APIs could be replayed by
  either at the other.
- **No widening.** A code or refresh token gives tokens only for the resources its
  authorization request named; a token request naming another is ``invalid_target``.
- **Exact match.** A value is compared as a string with the registered identifiers (each
  registered in its RFC 3986 normal form): no normalising, no prefixes.
- **Which apps may ask.** An API that lists ``resource_clients`` gets tokens for those apps
  only (another app's ``resource`` is ``invalid_target``); one that lists none, for every
  approved app.
- **A mistake spends nothing.** Two values or an unknown API are refused before a code or
  refresh token is looked at (``for_one_token``).
- **Without ``resource``** an access token is for the issuer (UserInfo) as before. An
  access token for an API is refused by UserInfo (it is not for it); introspection shows
  an API with identifiers only the tokens for it, a gateway (no identifiers) every app's.

In a parameters dict (``dict[str, str]``, as the authorization endpoint, the PAR endpoint
and the token endpoint read a request) the values of ``resource`` are kept as one JSON
array (``encode``): a URI may hold any character percent-encoded, so no separator is safe.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from core.store import Store
from directory.apps import apis_with_identifiers, is_resource_identifier
from idp.oidc.errors import OAuthError

PARAMETER = "resource"
MAX_VALUES = 10  # in one request; more is invalid_target
CACHE_SECONDS = 30.0  # as the client registry: a new API is usable within this time


def encode(values: Iterable[str]) -> str:
    return json.dumps(list(values))


def gathered(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A request's ``pairs`` with the values of ``resource``, which may be repeated (RFC 8707
    2), as one ``encode``d value; one sent empty counts as omitted (RFC 6749 3.1)."""
    pairs = list(pairs)
    values = [value for name, value in pairs if name == PARAMETER and value]
    kept = [(name, value) for name, value in pairs if name != PARAMETER]
    return [*kept, (PARAMETER, encode(values))] if values else kept


def from_object(value: object) -> str:
    """RFC 8707 2.1: in a request object, one value is a string, several an array of them;
    ValueError for anything else."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("resource must be a string or an array of strings")
    return encode(values)


def invalid_target(description: str) -> OAuthError:
    return OAuthError("invalid_target", description)


def requested(params: dict[str, str]) -> list[str]:
    """The ``resource`` values of a request (``encode``d), each checked as RFC 8707 2 asks:
    an absolute URI without a fragment (nor a query here); ``invalid_target`` otherwise."""
    if PARAMETER not in params:
        return []
    values = json.loads(params[PARAMETER])
    if len(values) > MAX_VALUES:
        raise invalid_target(f"at most {MAX_VALUES} resource values")
    for value in values:
        if not is_resource_identifier(value):
            raise invalid_target("resource must be an absolute URI without query or fragment")
    return list(dict.fromkeys(values))


def for_one_token(registry: ResourceRegistry, params: dict[str, str],
                  client_id: str) -> list[str]:
    """A token request's ``resource`` values (``requested``): at most one, registered, for
    this app; checked before a code or refresh token is looked at, so a mistake spends
    neither."""
    asked = requested(params)
    if len(asked) > 1:
        raise invalid_target("one resource per access token: ask for each in turn")
    registered(registry, asked, client_id)
    return asked


class _Api(NamedTuple):
    client_id: str
    clients: frozenset[str] | None  # the apps that may ask for its tokens; None: any


class ResourceRegistry:
    """The registered identifiers of approved APIs, cached per process for
    ``CACHE_SECONDS`` (one query then, none on the hot path)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._apis: dict[str, _Api] = {}
        self._loaded = -CACHE_SECONDS
        self._lock = threading.Lock()

    def owner(self, identifier: str) -> str | None:
        """The ``client_id`` of the approved API that registered ``identifier``."""
        api = self._api(identifier)
        return api.client_id if api else None

    def may_ask(self, identifier: str, client_id: str) -> bool:
        """Whether the app ``client_id`` may ask for tokens for ``identifier``'s API."""
        api = self._api(identifier)
        return api is not None and (api.clients is None or client_id in api.clients)

    def _api(self, identifier: str) -> _Api | None:
        if time.monotonic() - self._loaded >= CACHE_SECONDS:
            with self._lock:  # one thread reads the registry again, others wait for it
                if time.monotonic() - self._loaded >= CACHE_SECONDS:
                    self._apis, self._loaded = self._load(), time.monotonic()
        return self._apis.get(identifier)

    def _load(self) -> dict[str, _Api]:
        apis: dict[str, _Api] = {}
        with self._sessions() as session:
            for app, metadata in apis_with_identifiers(session, approved_only=True):
                if metadata.get("protected_resource") is True:
                    clients = metadata.get("resource_clients")
                    api = _Api(app.client_id, frozenset(clients) if clients else None)
                    apis.update(dict.fromkeys(metadata.get("resource_identifiers", []), api))
        return apis

    def forget(self) -> None:
        """Read the registry again at the next use (tests, the CLI after a change)."""
        with self._lock:
            self._loaded = -CACHE_SECONDS


def name_of(state: Any, identifier: str) -> str:
    """The name of the API ``identifier`` names, as its app is registered (``state``: the
    app's state, with its ``resources`` and ``clients`` registries); else the identifier."""
    owner = state.resources.owner(identifier)
    api = state.clients.get(owner) if owner else None
    return api.name if api else identifier


def registered(registry: ResourceRegistry, values: list[str],
               client_id: str) -> tuple[str, ...]:
    """``values``, each an identifier of an approved API that the app ``client_id`` may ask
    for; ``invalid_target`` otherwise."""
    for value in values:
        if registry.owner(value) is None:
            raise invalid_target("resource is not a registered API: " + value[:100])
        if not registry.may_ask(value, client_id):
            raise invalid_target("this client may not ask for tokens for the API "
                                 + value[:100])
    return tuple(values)


def owners(registry: ResourceRegistry, identifiers: Iterable[str]) -> tuple[str, ...]:
    """The ``client_id`` of the API holding each of ``identifiers`` now, or
    ``invalid_target`` for one no longer registered (the registry was read again since
    ``registered``)."""
    found = tuple(registry.owner(identifier) or "" for identifier in identifiers)
    if not all(found):
        raise invalid_target("resource is not a registered API")
    return found


def audience(registry: ResourceRegistry, asked: list[str],
             granted: tuple[str, ...] | None, client_id: str,
             granted_owners: tuple[str, ...] = ()) -> str | None:
    """The one API an access token is for (None: the issuer), from the token request's
    ``asked`` values and, for a user grant, the ``granted`` ones (``None``: no user grant,
    ``client_credentials``: any registered API); ``asked`` is checked (``for_one_token``).
    Still registered and open to the app, and held by the API that held it when the person
    signed in (``granted_owners``), or ``invalid_target``: an API removed, its apps
    changed, or its identifier given up and taken by another API since the grant."""
    if asked and granted is not None and asked[0] not in granted:
        raise invalid_target("resource was not named in the authorization request")
    if not asked and granted and len(granted) > 1:
        raise invalid_target("the grant names several resources: ask for one")
    chosen = asked[0] if asked else granted[0] if granted else None
    if chosen is None:
        return None
    registered(registry, [chosen], client_id)
    held_then = dict(zip(granted or (), granted_owners, strict=False))
    if granted is not None and registry.owner(chosen) != held_then.get(chosen):
        raise invalid_target("the API " + chosen[:100] + " is another app's since the "
                             "authorization: sign in again")
    return chosen


def held_as_granted(registry: ResourceRegistry, granted: tuple[str, ...],
                    owners: tuple[str, ...]) -> tuple[str, ...]:
    """The APIs of a grant (or consent) still held by the app that held them then: the
    only ones it may still give tokens for."""
    return tuple(api for api, owner in zip(granted, owners, strict=False)
                 if registry.owner(api) == owner)


def _given_up_key(identifier: str) -> str:
    return "resource-given-up:" + hashlib.sha256(identifier.encode()).hexdigest()


GIVEN_UP_MARGIN = int(CACHE_SECONDS) + 30  # workers may serve the old API this long after


def mark_given_up(store: Store, identifiers: Iterable[str], seconds: int) -> None:
    """``identifiers`` were given up (``idp apps update``, once committed): access tokens
    for them issued until ``GIVEN_UP_MARGIN`` from now (a worker's cached registry still
    names the old API that long) are ``active: false`` at introspection while they may
    live (``seconds``), so an API that registers one next is not shown the old API's."""
    until = int(time.time()) + GIVEN_UP_MARGIN
    for identifier in identifiers:
        store.set(_given_up_key(identifier), str(until).encode(),
                  ttl=seconds + GIVEN_UP_MARGIN)


def given_up_since(store: Store, identifier: str, iat: int) -> bool:
    """Whether a token for ``identifier`` issued in the second ``iat`` may be the old
    API's (``mark_given_up``)."""
    marked = store.get(_given_up_key(identifier))
    return marked is not None and int(marked) >= iat
