"""swarm's HTTP tracker (aiohttp); shares codecs with ``swarm.core``, not its session."""
