"""The parts of a torrent (issue 18): each owns one slice of the per-torrent state.

``swarm.torrent.Torrent`` is the coordinator: it builds these parts, routes
peer messages to them and runs the tick. Each part's docstring says which
state it owns; a part changes another part's state only through that part's
public methods. See docs/architecture.md for the map.
"""
