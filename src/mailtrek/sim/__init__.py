"""A Microsoft 365 test double (Entra ID token endpoint + Graph mail subset) over HTTPS.

Use ``Simulator(SimConfig(...)).start()`` in tests or ``mailtrek sim`` from a shell.
"""

from mailtrek.sim.config import Faults, Latency, Limits, SimConfig, UserSpec
from mailtrek.sim.server import Simulator

__all__ = ["Faults", "Latency", "Limits", "SimConfig", "Simulator", "UserSpec"]
