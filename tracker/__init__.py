"""swarm's HTTP tracker (aiohttp); shares codecs with ``swarm.core``, not its session.

Embedding (``swarm seed --with-tracker``)::

    t = await start_tracker("0.0.0.0", 6969)   # port 0 = a free one
    t.port, t.url                              # url: http://<LAN address>:<port>/announce
    await t.close()
"""

from tracker.server import RunningTracker, lan_address, start_tracker

__all__ = ["RunningTracker", "lan_address", "start_tracker"]
