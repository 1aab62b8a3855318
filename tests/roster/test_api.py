"""Group memberships are protected: the generic views API serves ``student_groups`` only to credentials with the
``all`` scope, while the roster view stays readable with any read scope (HTTP, SQLite and PostgreSQL)."""

from __future__ import annotations

import base64

import httpx

from proficio_ingest import CredentialStore, IngestSettings, create_app
from proficio_projector import RunnerSettings, install
from proficio_projector.roster import PROTECTED_VIEWS, Roster, StudentGroups
from tests.projector.support import FAST, caught_up

from .support import SAMPLE, import_package, learner_of, student_emails


async def test_only_the_all_scope_reads_the_protected_view(store_url: str) -> None:
    assert "student_groups" in PROTECTED_VIEWS
    app = create_app(IngestSettings(database_url=store_url))
    install(app, [Roster(), StudentGroups()], runner=RunnerSettings(owner="api-test", **FAST))
    async with app.router.lifespan_context(app):
        log = app.state.log
        await import_package(log, SAMPLE)
        await caught_up(log, "roster")
        await caught_up(log, "student_groups")

        async def basic(*scopes: str) -> dict[str, str]:
            created = await CredentialStore(log).create("district-7", "dashboard", list(scopes))
            token = base64.b64encode(f"{created.credential.key}:{created.secret}".encode()).decode()
            return {"Authorization": f"Basic {token}"}

        learner = await learner_of(log, student_emails()["usr-s-201"])
        one = f"/views/student_groups/memberships/{learner}/gender/2025-09-01"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lrs.test") as http:
            for scopes in (("all/read",), ("statements/read",), ("statements/read", "statements/write", "define")):
                headers = await basic(*scopes)
                for path in ("/views/student_groups/memberships", one):
                    refused = await http.get(path, headers=headers)
                    assert refused.status_code == 403, (scopes, path, refused.text)
                    assert "holds protected data" in refused.text
                    assert "needs the scope all" in refused.text
                roster = await http.get("/views/roster/learners", headers=headers)
                assert roster.status_code == 200, roster.text
                assert len(roster.json()["rows"]) == 12

            full = await basic("all")
            page = await http.get("/views/student_groups/memberships", params={"limit": 1000}, headers=full)
            assert page.status_code == 200, page.text
            assert len(page.json()["rows"]) == 54
            row = await http.get(one, headers=full)
            assert row.status_code == 200, row.text
            assert (row.json()["value"], row.json()["effective_to"]) == ("female", None)
