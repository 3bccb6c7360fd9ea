"""Discovery (RFC 7644 §4): ServiceProviderConfig, Schemas, ResourceTypes.

The schemas are generated from the resource classes (``resources.py``), so what
is published is what the server validates. The placement attributes of the
education extension (``schoolCode``, ``grade``, ``class``) list the codes of the
units inside the token's scope as ``canonicalValues`` while there are at most
``MAX_CANONICAL`` of them: a client (or a compliance tester) can then pick valid
codes; a larger scope publishes no list, and every code is still checked.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    Meta,
    Patch,
    ResourceType,
    Schema,
    SchemaExtension,
    ServiceProviderConfig,
    Sort,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.api_tokens import TokenScope
from directory.models import OrgKind, OrgUnit
from directory.scim.resources import (
    EDU_USER_SCHEMA,
    EducationUser,
    Group,
    User,
)

MAX_RESULTS = 200
MAX_CANONICAL = 200
DOCS = "https://github.com/edu-idp/edu-idp/blob/main/docs/scim.md"


def service_provider_config(base_url: str) -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=DOCS,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="Bearer token",
            description="An API token with the 'scim' permission, scoped to an org subtree.",
            primary=True,
        )],
        meta=Meta(resource_type="ServiceProviderConfig",
                  location=f"{base_url}/ServiceProviderConfig"),
    )


def resource_types(base_url: str) -> list[ResourceType]:
    return [
        ResourceType(
            id="User", name="User", endpoint="/Users", description="A person and their account",
            schema_=User.__schema__,
            schema_extensions=[SchemaExtension(schema_=EDU_USER_SCHEMA, required=True)],
            meta=Meta(resource_type="ResourceType", location=f"{base_url}/ResourceTypes/User"),
        ),
        ResourceType(
            id="Group", name="Group", endpoint="/Groups",
            description="An org unit: class, grade, school, department...",
            schema_=Group.__schema__,
            meta=Meta(resource_type="ResourceType", location=f"{base_url}/ResourceTypes/Group"),
        ),
    ]


def _codes(session: Session, scope: TokenScope, kind: OrgKind) -> list[str] | None:
    query = (select(OrgUnit.code).where(OrgUnit.path.startswith(scope.org_path),
                                        OrgUnit.kind == kind.value, OrgUnit.status == "active")
             .order_by(OrgUnit.code).limit(MAX_CANONICAL + 1))
    codes = list(session.scalars(query))
    return codes if 0 < len(codes) <= MAX_CANONICAL else None


def schemas(session: Session, scope: TokenScope, base_url: str) -> list[Schema]:
    education_user = EducationUser.to_schema()
    placement = {"schoolCode": OrgKind.school, "grade": OrgKind.grade, "class": OrgKind.class_}
    for attribute in education_user.attributes or []:
        if attribute.name in placement:
            attribute.canonical_values = _codes(session, scope, placement[attribute.name])
    found = [User.to_schema(), education_user, Group.to_schema(),
             Schema.to_schema(), ResourceType.to_schema(), ServiceProviderConfig.to_schema()]
    names = {User.__schema__: "User", EDU_USER_SCHEMA: "EducationUser",
             Group.__schema__: "Group"}
    for schema in found:
        schema.name = names.get(schema.id, schema.name)
        schema.meta = Meta(resource_type="Schema", location=f"{base_url}/Schemas/{schema.id}")
    return found


def dump(obj: Any) -> dict[str, Any]:
    from scim2_models import Context

    return obj.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
