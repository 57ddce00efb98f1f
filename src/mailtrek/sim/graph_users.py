"""Graph directory routes: users and domains.

- GET /users/{id|userPrincipalName}: learn.microsoft.com/graph/api/user-get
- GET /domains, GET /domains/{id}/serviceConfigurationRecords:
  learn.microsoft.com/graph/api/domain-list-serviceconfigurationrecords (domainDnsMxRecord,
  domainDnsTxtRecord resources)
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from mailtrek.sim.errors import GraphError
from mailtrek.sim.graph_common import api_version, directory_user
from mailtrek.sim.odata import page, select
from mailtrek.sim.state import SimState


def _mx_host(state: SimState, domain: str) -> str:
    configured = state.config.mx_records.get(domain)
    return configured or domain.replace(".", "-") + ".mail.protection.outlook.com"


def users_router(state: SimState) -> APIRouter:
    """Return the routes for users and domains."""
    router = APIRouter()

    @router.get("/users")
    async def list_users(request: Request) -> JSONResponse:
        items = [u.resource() for u in list(state.users.values())]
        return JSONResponse(page(items, request, state.base_url, 100, 999))

    @router.get("/users/{user_key}")
    async def get_user(user_key: str, request: Request) -> JSONResponse:
        user = directory_user(state, user_key)
        body = {"@odata.context": f"https://graph.microsoft.com/{api_version(request)}/$metadata#users/$entity"}
        body.update(select(user.resource(), request))
        return JSONResponse(body)

    @router.get("/domains")
    async def list_domains(request: Request) -> JSONResponse:
        items = [{"id": d, "isVerified": True, "isDefault": i == 0,
                  "supportedServices": ["Email", "OfficeCommunicationsOnline"]}
                 for i, d in enumerate(state.config.domains)]
        return JSONResponse(page(items, request, state.base_url, 100))

    @router.get("/domains/{domain}/serviceConfigurationRecords")
    async def service_records(domain: str, request: Request) -> JSONResponse:
        domain = domain.lower()
        if domain not in state.config.domains and domain not in state.config.mx_records:
            raise GraphError(404, "Request_ResourceNotFound",
                             f"Resource '{domain}' does not exist or one of its queried "
                             "reference-property objects are not present.")
        records = [
            {"@odata.type": "#microsoft.graph.domainDnsMxRecord", "id": f"mx-{domain}",
             "isOptional": False, "label": domain, "recordType": "Mx",
             "supportedService": "Email", "ttl": 3600,
             "mailExchange": _mx_host(state, domain), "preference": 0},
            {"@odata.type": "#microsoft.graph.domainDnsTxtRecord", "id": f"txt-{domain}",
             "isOptional": False, "label": domain, "recordType": "Txt",
             "supportedService": "Email", "ttl": 3600,
             "text": "v=spf1 include:spf.protection.outlook.com -all"},
        ]
        return JSONResponse(page(records, request, state.base_url, 100))

    return router
