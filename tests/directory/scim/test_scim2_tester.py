"""The whole scim2-tester compliance suite against the real endpoint, over real HTTP.

The token is scoped to school T-S1, which has one grade and one class, so the
codes scim2-tester picks from the published ``canonicalValues`` of the education
extension are always consistent with each other (see docs/scim.md, "Testing").
"""

from __future__ import annotations

from collections import Counter

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from core.db import Database
from core.settings import Settings
from core.store import Store
from tests.directory.scim.conftest import Tokens, auth
from tests.directory.scim.live import live_server

FAILING = {Status.ERROR, Status.CRITICAL}


def _describe(result) -> str:
    return f"{result.resource_type or '-'} {result.title}: {result.reason}"


def test_scim2_tester_reports_no_failure(
    settings: Settings, db: Database, store: Store, tokens: Tokens
) -> None:
    with live_server(settings, db, store) as issuer, httpx2.Client(
        base_url=f"{issuer}/scim/v2", headers=auth(tokens.school), timeout=30
    ) as http:
        results = check_server(SyncSCIMClient(http))

    statuses = Counter(r.status for r in results)
    failures = [_describe(r) for r in results if r.status in FAILING]
    print(f"scim2-tester: {len(results)} checks, " + ", ".join(
        f"{s.name.lower()}={n}" for s, n in sorted(statuses.items(), key=lambda i: i[0].value)))
    assert not failures, "\n".join(failures)
    # Everything ran: both resource types and every family of checks.
    assert {r.resource_type for r in results} >= {"User", "Group"}
    assert statuses[Status.SUCCESS] >= 75
    # The only checks skipped: searching Users and Groups at once (POST /.search), which
    # this server answers with 501 as RFC 7644 §3.12 allows; scim2-tester skips it.
    skipped = [r for r in results if r.status == Status.SKIPPED]
    assert all(r.title == "search_with_attributes" for r in skipped), skipped
