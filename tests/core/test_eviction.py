"""swarm.core.eviction: whom the full connection pool drops for a newcomer."""

from swarm.core.eviction import NEWCOMER_GRACE, USELESS_AFTER, PeerUse, choose_eviction


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
    assert choose_eviction([use("a", interested=True, asked=True)], now) is None  # wants our data, asked
    assert choose_eviction([use("a", downloaded=1)], now) is None  # gave us something
    assert choose_eviction([use("a", has_what_we_want=True)], now) is None


def test_the_one_heard_from_least_recently_goes() -> None:
    now = 100.0
    peers = [use("recent", last_recv=90.0), use("quiet", last_recv=20.0), use("busy", interested=True)]
    assert choose_eviction(peers, now) == "quiet"
    assert choose_eviction([], now) is None


def test_at_the_cap_a_peer_that_never_asked_makes_room_after_its_grace() -> None:
    """A pool full of connections that say interested and never request must not
    refuse a newcomer (issue 16 #3): the unproven peer connected longest goes,
    one that already left an unchoke unused before it, one still on trial in an
    unchoke after it."""
    now = 100.0
    squatters = [
        use("old", interested=True, connected_at=10.0),
        use("older", interested=True, connected_at=5.0),
        use("young", interested=True, connected_at=now - NEWCOMER_GRACE + 1),  # in its grace
    ]
    assert choose_eviction(squatters, now) == "older"
    wasted = use("wasted", interested=True, connected_at=50.0, caught_idle=True)
    assert choose_eviction([*squatters, wasted], now) == "wasted"
    # one on trial in an unchoke stays until the choker has judged it
    on_trial = use("on-trial", interested=True, connected_at=1.0, unchoked=True)
    assert choose_eviction([*squatters, on_trial], now) == "older"
    assert choose_eviction([on_trial], now) == "on-trial"
    assert choose_eviction(squatters[2:], now) is None
    # a useless peer (wants nothing, gives nothing) still goes first
    assert choose_eviction([*squatters, use("useless", last_recv=90.0)], now) == "useless"


def test_peers_that_asked_gave_downloaded_or_have_what_we_want_are_never_unproven() -> None:
    """Honest peers slow to start keep their place: one that requested something (an
    allowed-fast piece counts), one that sent us data, one that is downloading (its
    pipeline full elsewhere, it announces the pieces it gets there), one holding
    pieces we want (a seed we download from)."""
    now = 1000.0
    honest = [
        use("asked", interested=True, asked=True, caught_idle=True),
        use("gave", interested=True, downloaded=16384),
        use("has", interested=True, has_what_we_want=True),
        use("busy-elsewhere", interested=True, announced=True),  # its pipeline is full elsewhere
        use("seed-we-leech-from", has_what_we_want=True),
    ]
    assert choose_eviction(honest, now) is None


def test_an_address_holding_a_silent_connection_cannot_push_out_another() -> None:
    """A flood from a few addresses must not churn the pool into connections all
    younger than their grace (the honest newcomer after it would be refused): a
    newcomer from an address that already holds a connection that asked for nothing
    replaces no unproven peer; one from another address does. Useless peers still go."""
    now = 100.0
    pool = [
        use("a-old", interested=True, connected_at=1.0, ip="10.0.0.1"),
        use("a-new", interested=True, connected_at=99.5, ip="10.0.0.1"),  # in its grace, still silent
        use("b-old", interested=True, connected_at=2.0, ip="10.0.0.2"),
        use("c-asked", interested=True, asked=True, ip="10.0.0.3"),
    ]
    assert choose_eviction(pool, now, newcomer_ip="10.0.0.1") is None
    assert choose_eviction(pool, now, newcomer_ip="10.0.0.3") == "a-old"  # its connection asked
    assert choose_eviction(pool, now, newcomer_ip="10.0.0.9") == "a-old"
    assert choose_eviction([*pool, use("useless", ip="10.0.0.5")], now, newcomer_ip="10.0.0.1") == "useless"
