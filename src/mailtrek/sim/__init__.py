"""A Microsoft 365 test double (Entra ID token endpoint + Graph mail subset) over HTTPS.

Use ``Simulator(SimConfig(...)).start()`` in tests or ``mailtrek sim`` from a shell.

URL layout (BASE = https://127.0.0.1:PORT):

    GET  BASE/{tenant}/v2.0/.well-known/openid-configuration   OpenID discovery (MSAL)
    GET  BASE/{tenant}/discovery/v2.0/keys                     JWKS
    POST BASE/{tenant}/oauth2/v2.0/token                       client credentials
    BASE/graph/v1.0/...  and  BASE/graph/beta/...              Graph (beta adds importMime)
        users, users/{id|upn}, domains, domains/{d}/serviceConfigurationRecords,
        users/{u}/mailFolders[/{f}[/childFolders]], users/{u}[/mailFolders/{f}]/messages,
        users/{u}/messages/{m}[/$value|/move|/attachments[/createUploadSession|/{a}]],
        users/{u}/mailFolders/{f}/importMime (beta), $batch
    OUTLOOK/api/v2.0/Users('..')/Messages('..')/AttachmentSessions('..')  uploadUrl, on a
        second port (Simulator.outlook_url), as Graph hands out outlook.office.com URLs
"""

from mailtrek.sim.config import Faults, Latency, Limits, SimConfig, UserSpec
from mailtrek.sim.server import Simulator

__all__ = ["Faults", "Latency", "Limits", "SimConfig", "Simulator", "UserSpec"]
