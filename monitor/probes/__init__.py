"""Shop probes: whether Sendcloud will be able to reach each shop, seen before it fails.

- ``targets``: the host and port a shop URL is probed at (pure);
- ``results``: what a probe found in one word, and a run of probes (pure, time passed in);
- ``lookup``: resolving a host once, refusing addresses that are not public;
- ``tls``: the TLS prober (a verified handshake, the certificate read; no HTTP request);
- ``tcp``: the TCP prober for ``http://`` shops (a connect);
- ``runner``: when each target is probed, off the poll path.

May import the base modules only. The package imports only its pure modules; the I/O ones
(``runner`` and what it uses) are imported where they run.
"""

from monitor.probes.results import RESULTS, Outcome, Result, ShopProbe
from monitor.probes.targets import Target, target_of

__all__ = ["RESULTS", "Outcome", "Result", "ShopProbe", "Target", "target_of"]
