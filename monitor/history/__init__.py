"""The monitor's memory: what each integration was, and when, for the status page, the API,
badges and reports.

- ``availability``: pure availability math over state intervals (explicit times, no I/O);
- ``store``: the SQLite history file — schema and migrations, the writer thread, the readers,
  and :class:`EpisodeRecorder`, the alerting sink that records alert episodes; also the
  configuration changes, and what probes and inventory walks resume from after a restart;
- ``documents``: the JSON documents of the history API, from the store and the math;
- ``report``: the report a merchant can be sent (JSON, CSV, Markdown, self-contained HTML);
- ``mutes``: :class:`MuteStore`, the mutes in the same file (the CLI and the daemon share it).

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.store``, ``monitor.probes`` (the
probe states it keeps), ``monitor.alerting`` (the wording of causes), ``monitor.notify`` (the
mute) and the base modules.
"""

from monitor.history.availability import Availability, Interval, availability, combined
from monitor.history.mutes import MuteStore
from monitor.history.store import EpisodeRecorder, HistoryError, HistoryStore, recorded_state

__all__ = [
    "Availability",
    "EpisodeRecorder",
    "HistoryError",
    "HistoryStore",
    "Interval",
    "MuteStore",
    "availability",
    "combined",
    "recorded_state",
]
