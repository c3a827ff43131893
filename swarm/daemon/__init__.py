"""`swarm daemon`: many torrents in one process, driven over an HTTP API (docs/daemon.md)."""
