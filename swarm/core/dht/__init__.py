"""The mainline DHT (BEP 5), pure: KRPC codec, routing table, lookups, tokens, peer store.

Nothing here touches a socket or a clock; ``swarm.dht`` is the asyncio glue.
"""
