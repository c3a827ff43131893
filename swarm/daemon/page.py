"""The web page at ``/`` (filled in by a later step)."""

PAGE = "<!doctype html><title>swarm</title><p>swarm daemon</p>"
