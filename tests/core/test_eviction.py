"""swarm.core.eviction: whom the full connection pool drops for a newcomer."""

from swarm.core.eviction import USELESS_AFTER, PeerUse, choose_eviction


def use(key: str, **kw: object) -> PeerUse:
    fields: dict[str, object] = dict(
        interested=False, downloaded=0, has_what_we_want=False, connected_at=0.0, last_recv=0.0
    )
    fields.update(kw)
    return PeerUse(key=key, **fields)  # type: ignore[arg-type]


def test_only_long_useless_peers_are_dropped() -> None:
    now = USELESS_AFTER + 1
    assert choose_eviction([use("a")], now) == "a"
    assert choose_eviction([use("a", connected_at=now - 1)], now) is None  # too new to judge
    assert choose_eviction([use("a", interested=True)], now) is None  # wants our data
    assert choose_eviction([use("a", downloaded=1)], now) is None  # gave us something
    assert choose_eviction([use("a", has_what_we_want=True)], now) is None


def test_the_one_heard_from_least_recently_goes() -> None:
    now = 100.0
    peers = [use("recent", last_recv=90.0), use("quiet", last_recv=20.0), use("busy", interested=True)]
    assert choose_eviction(peers, now) == "quiet"
    assert choose_eviction([], now) is None
