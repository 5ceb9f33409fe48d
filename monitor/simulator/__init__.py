"""A Sendcloud v3 Integrations API simulator on loopback HTTP, for the demo, the benchmark and
the tests (``server``), and shops on loopback for the probes (``shops``). The daemon itself
never imports it: only the ``demo`` and ``simulator`` commands do, when they run.

May import ``monitor.health`` and the base modules.
"""

from monitor.simulator.server import (
    DEMO_PUBLIC_KEY,
    DEMO_SECRET_KEY,
    SimIntegration,
    Simulator,
    demo_integrations,
)

__all__ = ["DEMO_PUBLIC_KEY", "DEMO_SECRET_KEY", "SimIntegration", "Simulator", "demo_integrations"]
