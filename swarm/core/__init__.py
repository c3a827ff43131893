"""The pure core: protocol logic with no sockets, no files, no event loop.

Everything in here takes bytes, events and the current time as arguments and
imports only the standard library and ``swarm.errors``, so it can be unit- and
property-tested in microseconds.
"""
