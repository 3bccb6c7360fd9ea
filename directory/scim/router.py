"""The SCIM 2.0 endpoints (RFC 7644) under ``/scim/v2``.

Every endpoint authenticates an API token with the ``scim`` permission and sees
only its org subtree. Reads and writes go through ``users`` and ``groups``;
every write is audited (actor ``api-token:<id>``, no personal data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from scim2_models import (
    Context,
    InvalidValueException,
    ListResponse,
    NotFoundException,
    NotImplementedException,
    PatchOp,
    ResponseParameters,
    ScimPolicy,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from core import audit
from core.web.errors import allowed_methods, refusal
from directory.api_tokens import TokenScope
from directory.models import Account, OrgUnit, Person
from directory.people import may_sign_in
from directory.scim import discovery, groups, users
from directory.scim.filters import Translator
from directory.scim.protocol import (
    MethodNotAllowed,
    ScimRoute,
    audit_context,
    check_if_match,
    json_body,
    scim_response,
    session_scope,
    settings_of,
    token_scope,
)
from directory.scim.resources import GROUP_SCHEMA, USER_SCHEMA, GroupResource, UserResource

PREFIX = "/scim/v2"
DEFAULT_COUNT = 100
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Tolerant reading, for the clients in the wild (Microsoft Entra sends attributes we do not
# keep, removes with a value, patches emails[type eq "work"] before it exists).
POLICY = ScimPolicy(unknown=ScimPolicy.Unknown.ignore,
                    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
                    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)

router = APIRouter(prefix=PREFIX, route_class=ScimRoute, include_in_schema=False)


def base_url(request: Request) -> str:
    return settings_of(request).issuer.rstrip("/") + PREFIX


def _audit(request: Request, session: Session, scope: TokenScope, action: str, target: str,
           changed: list[str] | None = None) -> None:
    audit.record(session, actor=scope.actor, action=action, outcome="success", target=target,
                 context=audit_context(request),
                 detail={"attributes": sorted(set(changed))} if changed is not None else None)


# -- discovery ----------------------------------------------------------------------


def _list(resources: list[dict[str, Any]], total: int, start: int = 1) -> dict[str, Any]:
    return {"schemas": [LIST_RESPONSE], "totalResults": total, "startIndex": start,
            "itemsPerPage": len(resources), "Resources": resources}


@router.get("/ServiceProviderConfig")
async def service_provider_config(request: Request) -> Response:
    with session_scope(request) as session:
        token_scope(request, session)
    return scim_response(discovery.dump(discovery.service_provider_config(base_url(request))))


@router.get("/Schemas")
async def list_schemas(request: Request) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        found = discovery.schemas(session, scope, base_url(request))
    return scim_response(_list([discovery.dump(s) for s in found], len(found)))


@router.get("/Schemas/{schema_id}")
async def get_schema(request: Request, schema_id: str) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        found = discovery.schemas(session, scope, base_url(request))
    for schema in found:
        if schema.id == schema_id:
            return scim_response(discovery.dump(schema))
    raise NotFoundException(detail="No such schema.")


@router.get("/ResourceTypes")
async def list_resource_types(request: Request) -> Response:
    with session_scope(request) as session:
        token_scope(request, session)
    found = discovery.resource_types(base_url(request))
    return scim_response(_list([discovery.dump(r) for r in found], len(found)))


@router.get("/ResourceTypes/{type_id}")
async def get_resource_type(request: Request, type_id: str) -> Response:
    with session_scope(request) as session:
        token_scope(request, session)
    for resource_type in discovery.resource_types(base_url(request)):
        if resource_type.id == type_id:
            return scim_response(discovery.dump(resource_type))
    raise NotFoundException(detail="No such resource type.")


for _path in ("/ServiceProviderConfig", "/Schemas", "/Schemas/{schema_id}", "/ResourceTypes",
              "/ResourceTypes/{type_id}"):

    @router.api_route(_path, methods=["POST", "PUT", "PATCH", "DELETE"])
    @refusal
    async def read_only(request: Request) -> Response:
        raise MethodNotAllowed(allowed_methods(request, router.routes))


@router.post("/.search")
async def root_search(request: Request) -> Response:
    with session_scope(request) as session:
        token_scope(request, session)
    raise NotImplementedException(
        detail="Search one resource type at a time: /Users/.search or /Groups/.search.")


# -- listing ------------------------------------------------------------------------


class Kind:
    """What differs between Users and Groups for the shared endpoints."""

    def __init__(self, name: str, schema: str, model: Any) -> None:
        self.name, self.schema, self.model = name, schema, model


USERS = Kind("User", USER_SCHEMA, UserResource)
GROUPS = Kind("Group", GROUP_SCHEMA, GroupResource)


MAX_START_INDEX = 2**31


def _int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidValueException(detail=f"{name} must be an integer.") from None


def _response_parameters(kind: Kind, attributes: Any, excluded: Any) -> ResponseParameters:
    try:
        return ResponseParameters[kind.model].model_validate(  # type: ignore[name-defined]
            {"attributes": attributes or None, "excludedAttributes": excluded or None})
    except ValueError:
        raise InvalidValueException(
            detail="attributes and excludedAttributes must name attributes, "
                   "and cannot both be given.") from None


def _sort_key(sort_by: str, kind: Kind) -> str:
    key = sort_by.strip().lower()
    prefix = kind.schema.lower() + ":"
    return key[len(prefix):] if key.startswith(prefix) else key


def _query(request: Request, session: Session, scope: TokenScope, kind: Kind,
           params: dict[str, Any]) -> Response:
    settings = settings_of(request)
    response_parameters = _response_parameters(
        kind, params.get("attributes"), params.get("excludedAttributes"))
    # beyond the last result the list is empty (RFC 7644 3.4.2.4); the bound keeps the
    # OFFSET within what the databases take
    start = min(max(_int(params.get("startIndex"), "startIndex", 1), 1), MAX_START_INDEX)
    count = min(max(_int(params.get("count"), "count", DEFAULT_COUNT), 0),
                discovery.MAX_RESULTS)
    if kind is USERS:
        query, attributes, sorts, tiebreak = (users.visible_users(scope),
                                              users.filter_attributes(settings, scope),
                                              users.sort_columns(), Person.id)
    else:
        query, attributes, sorts, tiebreak = (groups.visible_groups(scope),
                                              groups.filter_attributes(scope),
                                              groups.sort_columns(), OrgUnit.id)
    text = params.get("filter")
    if text:
        if not isinstance(text, str):
            raise InvalidValueException(detail="filter must be a string.")
        query = query.where(Translator(attributes, (kind.schema,))(text))
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    order: list[Any] = []
    if params.get("sortBy"):
        column = sorts.get(_sort_key(str(params["sortBy"]), kind))
        if column is None:
            raise InvalidValueException(detail="Sorting on this attribute is not supported.")
        descending = str(params.get("sortOrder") or "ascending").lower()
        if descending not in ("ascending", "descending"):
            raise InvalidValueException(detail="sortOrder is ascending or descending.")
        order.append(column.desc() if descending == "descending" else column.asc())
    order.append(tiebreak)
    page = query.order_by(*order).offset(start - 1).limit(count)
    base = base_url(request)
    if kind is USERS:
        rows = [(r[0], r[1]) for r in session.execute(page)]
        found: list[Any] = users.render(session, settings, scope, base, rows)
    else:
        with_members = _returns_members(response_parameters)
        found = groups.render(session, scope, base, list(session.scalars(page)), with_members)
    listing = ListResponse[kind.model](  # type: ignore[name-defined]
        total_results=total or 0, start_index=start, items_per_page=len(found),
        resources=found)
    body = listing.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
                              response_parameters=response_parameters)
    body.setdefault("Resources", [])
    return scim_response(body)


def _returns_members(parameters: ResponseParameters) -> bool:
    if parameters.attributes:
        return any(str(a).lower().startswith("members") for a in parameters.attributes)
    return not any(str(a).lower().startswith("members")
                   for a in parameters.excluded_attributes or [])


@router.get("/Users")
async def list_users(request: Request) -> Response:
    return _list_endpoint(request, USERS, dict(request.query_params))


@router.get("/Groups")
async def list_groups(request: Request) -> Response:
    return _list_endpoint(request, GROUPS, dict(request.query_params))


@router.post("/Users/.search")
async def search_users(request: Request) -> Response:
    return _list_endpoint(request, USERS, _search_params(await json_body(request)))


@router.post("/Groups/.search")
async def search_groups(request: Request) -> Response:
    return _list_endpoint(request, GROUPS, _search_params(await json_body(request)))


def _search_params(body: dict[str, Any]) -> dict[str, Any]:
    params = {k: body.get(k) for k in ("attributes", "excludedAttributes", "filter", "sortBy",
                                        "sortOrder", "startIndex", "count")}
    for key in ("attributes", "excludedAttributes"):
        if isinstance(params[key], list):
            params[key] = ",".join(str(v) for v in params[key])
    return params


def _list_endpoint(request: Request, kind: Kind, params: dict[str, Any]) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        return _query(request, session, scope, kind, params)


# -- single resources ---------------------------------------------------------------


def _one(resource: Any, kind: Kind, request: Request, status: int = 200) -> Response:
    parameters = _response_parameters(kind, request.query_params.get("attributes"),
                                      request.query_params.get("excludedAttributes"))
    body = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
                               response_parameters=parameters)
    headers = {"ETag": resource.meta.version} if resource.meta.version else {}
    if status == 201:
        headers["Location"] = resource.meta.location
    return scim_response(body, status, headers)


def _validate(kind: Kind, body: dict[str, Any], context: Context) -> Any:
    return kind.model.model_validate(body, scim_ctx=context, scim_policy=POLICY)


def _user_body(body: dict[str, Any], current: UserResource | None) -> dict[str, Any]:
    """Leniencies: ``displayName`` stands in for a missing name; ``active`` defaults; an
    address sent in parts gets its ``formatted`` from them."""
    body = dict(body)
    if not body.get("name") and isinstance(body.get("displayName"), str):
        body["name"] = {"formatted": body["displayName"]}
    body.pop("displayName", None)
    for key in ("emails", "phoneNumbers"):  # the primary value first: we keep order, not flags
        if isinstance(body.get(key), list):
            body[key] = sorted(body[key], key=lambda v: not (isinstance(v, dict)
                                                             and v.get("primary") is True))
    if body.get("active") is None:
        body["active"] = current.active if current is not None else True
    if isinstance(body.get("addresses"), list):
        body["addresses"] = [_formatted_address(a) for a in body["addresses"]]
    return body


ADDRESS_PARTS = ("country", "region", "locality", "streetAddress", "postalCode")


def _formatted_address(address: Any) -> Any:
    """An address without ``formatted``: its parts joined, largest first (a Chinese address
    reads country, province, city, street, then postal code)."""
    if not isinstance(address, dict) or address.get("formatted"):
        return address
    parts = [address[k] for k in ADDRESS_PARTS if isinstance(address.get(k), str)]
    return {**address, "formatted": " ".join(p.strip() for p in parts if p.strip())} \
        if parts else address


def _current_user(request: Request, session: Session, scope: TokenScope,
                  uid: str) -> tuple[Person, Any, UserResource]:
    person, account = users.find(session, scope, uid)
    resource = users.render(session, settings_of(request), scope, base_url(request),
                            [(person, account)])[0]
    return person, account, resource


@router.post("/Users")
async def create_user(request: Request) -> Response:
    body = await json_body(request)
    with session_scope(request) as session:
        scope = token_scope(request, session)
        desired = _validate(USERS, _user_body(body, None), Context.RESOURCE_CREATION_REQUEST)
        writer = users.UserWriter(session, settings_of(request), scope)
        person = writer.create(desired)
        _audit(request, session, scope, "scim.user.create", f"user:{person.uid}", writer.changed)
        _, _, created = _current_user(request, session, scope, person.uid)
    return _one(created, USERS, request, 201)


@router.get("/Users/{uid}")
async def get_user(request: Request, uid: str) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        _, _, resource = _current_user(request, session, scope, uid)
    return _one(resource, USERS, request)


@router.put("/Users/{uid}")
async def replace_user(request: Request, uid: str) -> Response:
    body = await json_body(request)
    with session_scope(request) as session:
        scope = token_scope(request, session)
        person, account, current = _current_user(request, session, scope, uid)
        check_if_match(request, current.meta.version)
        desired = _validate(USERS, _user_body(body, current),
                            Context.RESOURCE_REPLACEMENT_REQUEST)
        writer = users.UserWriter(session, settings_of(request), scope)
        writer.apply(person, account, desired, current)
        _audit(request, session, scope, "scim.user.replace", f"user:{uid}", writer.changed)
        _, _, updated = _current_user(request, session, scope, uid)
        closed = _closed(person, account)
    await _end_sessions(request, closed)
    return _one(updated, USERS, request)


@router.patch("/Users/{uid}")
async def patch_user(request: Request, uid: str) -> Response:
    body = await json_body(request)
    with session_scope(request) as session:
        scope = token_scope(request, session)
        person, account, current = _current_user(request, session, scope, uid)
        check_if_match(request, current.meta.version)
        desired = _patched(USERS, body, current)
        writer = users.UserWriter(session, settings_of(request), scope)
        writer.apply(person, account, desired, current, patch=True)
        _audit(request, session, scope, "scim.user.patch", f"user:{uid}", writer.changed)
        _, _, updated = _current_user(request, session, scope, uid)
        closed = _closed(person, account)
    await _end_sessions(request, closed)
    return _one(updated, USERS, request)


@router.delete("/Users/{uid}")
async def delete_user(request: Request, uid: str) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        person, account, current = _current_user(request, session, scope, uid)
        check_if_match(request, current.meta.version)
        left = users.deactivate(session, scope, person, account)
        _audit(request, session, scope, "scim.user.delete", f"user:{uid}",
               ["placement"] + (["active"] if left else []))
        closed = _closed(person, account)
    await _end_sessions(request, closed)
    return Response(status_code=204)


def _closed(person: Person, account: Account) -> int | None:
    """The account's id when it may no longer sign in (deactivated, left), else None."""
    return None if may_sign_in(account.disabled, person.status) else account.id


async def _end_sessions(request: Request, account_id: int | None) -> None:
    """Once the change is committed: end the sessions of an account that may no longer
    sign in, in every browser, and tell their apps (``idp.sessions.end_everywhere``, which
    ``idp.app`` offers as ``app.state.end_sessions``); without it (this router on its own)
    they end when next used."""
    end_sessions = getattr(request.app.state, "end_sessions", None)
    if account_id is not None and end_sessions is not None:  # store, database: a thread
        await run_in_threadpool(end_sessions, account_id)


def _patched(kind: Kind, body: dict[str, Any], current: Any) -> Any:
    patch = PatchOp[kind.model].model_validate(  # type: ignore[name-defined]
        body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY)
    desired = current.model_copy(deep=True)
    patch.patch(desired, scim_policy=POLICY)
    return desired


def _current_group(request: Request, session: Session, scope: TokenScope,
                   group_id: str) -> tuple[OrgUnit, GroupResource]:
    unit = groups.find(session, scope, group_id)
    return unit, groups.render(session, scope, base_url(request), [unit])[0]


@router.post("/Groups")
async def create_group(request: Request) -> Response:
    body = await json_body(request)
    with session_scope(request) as session:
        scope = token_scope(request, session)
        desired = _validate(GROUPS, body, Context.RESOURCE_CREATION_REQUEST)
        writer = groups.GroupWriter(session, scope)
        unit = writer.create(desired)
        _audit(request, session, scope, "scim.group.create", f"org_unit:{unit.id}",
               writer.changed)
        _, created = _current_group(request, session, scope, str(unit.id))
    return _one(created, GROUPS, request, 201)


@router.get("/Groups/{group_id}")
async def get_group(request: Request, group_id: str) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        _, resource = _current_group(request, session, scope, group_id)
    return _one(resource, GROUPS, request)


def _group_write(request: Request, group_id: str, body: dict[str, Any], action: str,
                 desire: Callable[[GroupResource], GroupResource]) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        unit, current = _current_group(request, session, scope, group_id)
        check_if_match(request, current.meta.version or "")
        desired = desire(current)
        writer = groups.GroupWriter(session, scope)
        writer.apply(unit, desired, current)
        _audit(request, session, scope, action, f"org_unit:{unit.id}", writer.changed)
        _, updated = _current_group(request, session, scope, group_id)
    return _one(updated, GROUPS, request)


@router.put("/Groups/{group_id}")
async def replace_group(request: Request, group_id: str) -> Response:
    body = await json_body(request)
    return _group_write(request, group_id, body, "scim.group.replace",
                        lambda _: _validate(GROUPS, body, Context.RESOURCE_REPLACEMENT_REQUEST))


@router.patch("/Groups/{group_id}")
async def patch_group(request: Request, group_id: str) -> Response:
    body = await json_body(request)
    return _group_write(request, group_id, body, "scim.group.patch",
                        lambda current: _patched(GROUPS, body, current))


@router.delete("/Groups/{group_id}")
async def delete_group(request: Request, group_id: str) -> Response:
    with session_scope(request) as session:
        scope = token_scope(request, session)
        unit, current = _current_group(request, session, scope, group_id)
        check_if_match(request, current.meta.version or "")
        groups.close(session, scope, unit)
        _audit(request, session, scope, "scim.group.delete", f"org_unit:{unit.id}", ["status"])
    return Response(status_code=204)


@router.api_route("/{rest:path}", methods=ALL_METHODS)
@refusal
async def not_found(request: Request, rest: str) -> Response:
    """An unknown endpoint (404), or a known one that does not take this method (405 with
    ``Allow``: ``PUT /Users`` is a 405, not a 404)."""
    with session_scope(request) as session:
        token_scope(request, session)
    if allow := allowed_methods(request, router.routes):
        raise MethodNotAllowed(allow)
    raise NotFoundException(detail="No such SCIM endpoint.")
