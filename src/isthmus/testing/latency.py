"""A wide-area link on loopback: a TCP proxy that delays every byte by a fixed time in
each direction (25 ms each way is a 50 ms round trip, the issue's WAN).

Bytes keep their order and the link has no bandwidth limit of its own: what it models is
the round trip, which is what DIMSE pays per instance and the relay need not.  Each
direction is a queue of (due time, chunk) drained by its own task, so a window of data
is in flight at once, as on a real long link.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque

from isthmus.testing.net import free_port


class LatencyProxy:
    """127.0.0.1:`port` → `target`, `delay` seconds each way; `start()`, `close()`."""

    def __init__(self, target: tuple[str, int], delay: float = 0.025, port: int = 0) -> None:
        self.target = target
        self.delay = delay
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> LatencyProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(timeout=10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), timeout=10
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, far_writer), self._pipe(far_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction, each chunk released `delay` after it arrived."""
        queue: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        done = False

        async def release() -> None:
            while True:
                while not queue:
                    if done:
                        return
                    arrived.clear()
                    await arrived.wait()
                due, chunk = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(release())
        try:
            while chunk := await reader.read(262_144):
                queue.append((time.monotonic() + self.delay, chunk))
                arrived.set()
        except OSError:
            pass
        finally:
            queue.append((time.monotonic() + self.delay, b""))
            done = True
            arrived.set()
            with contextlib.suppress(OSError, ConnectionError):
                await sender
                writer.close()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            # Connections still open are cut: their tasks end here, not with the loop.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
