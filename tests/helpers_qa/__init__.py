"""Helpers for the acceptance ("hostile world") tests: raw fake peers, crafted torrents."""
