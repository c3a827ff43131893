"""swarm: a BitTorrent client and LAN tracker."""

__version__ = "0.1.0"
