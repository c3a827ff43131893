"""The first pass judges the seed's uplink by what is written and not yet sent (issue 17).

The serving task moves requests into the transport as fast as it takes them, so
the request queues alone were nearly empty at a seed whose uplink was 99 % busy
(24 leechers), and the pass took it for idle: 0.14 copies of the file went out
as second copies of pieces still on their way to their first owners.
"""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

from swarm.parts.upload import _unsent


async def test_unsent_counts_the_transports_and_the_kernels_send_buffers() -> None:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # accepted ones inherit it
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(on_connect, sock=listener)
    port = listener.getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        _, their_writer = await asyncio.wait_for(accepted, 5)
        peer = SimpleNamespace(transport=writer.transport)
        assert _unsent(peer) == 0  # type: ignore[arg-type]
        # the other side does not read: what its small receive buffer does not hold
        # waits here, in asyncio's buffer or the kernel's
        writer.write(bytes(8 << 20))
        assert _unsent(peer) >= 7 << 20  # type: ignore[arg-type]
        assert _unsent(SimpleNamespace(transport=None)) == 0  # type: ignore[arg-type]
        writer.transport.abort()
        their_writer.close()
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
