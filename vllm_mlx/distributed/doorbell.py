"""A plain TCP side channel from rank 0 to every other rank.

Why not a collective: an idle rank parked in a ring receive busy-polls (measured
~40-56% of a core per rank on this project's test box), and a collective cannot
time out. So while the group has nothing to do, the other ranks sleep in a
blocking ``recv`` on this socket and rank 0 rings it (one byte) before the next
lockstep step. The same sockets give both sides liveness for free: a peer that
dies closes its end (rank 0 sees EOF at once, even while idle), and rank 0 sends
a heartbeat byte every few seconds so an idle peer notices a rank 0 that hung.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from typing import Callable

log = logging.getLogger("vllm_mlx.distributed")

RING = b"r"
BEAT = b"h"


class PeerLost(RuntimeError):
    pass


class Doorbell:
    def __init__(self, rank: int, size: int, timeout: float):
        self.rank, self.size, self.timeout = rank, size, timeout
        self._lock = threading.Lock()
        self._peers: dict[int, socket.socket] = {}
        self._conn: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._closed = False

    # -- set-up: rank 0 listens, the others connect ---------------------------
    def listen(self) -> int:
        """Rank 0: open the listening socket; returns its port (sent to the peers by a collective)."""
        self._listener = socket.create_server(("", 0), family=socket.AF_INET, backlog=self.size)
        return self._listener.getsockname()[1]

    def accept_all(self) -> None:
        assert self._listener is not None
        self._listener.settimeout(self.timeout)
        try:
            while len(self._peers) < self.size - 1:
                conn, _ = self._listener.accept()
                conn.settimeout(self.timeout)
                rank = struct.unpack("!I", _recv_exact(conn, 4))[0]
                conn.settimeout(None)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._peers[rank] = conn
        except OSError as exc:
            raise PeerLost(f"only ranks {sorted(self._peers)} connected to rank 0's doorbell within "
                           f"{self.timeout:g} s: {exc}") from exc
        finally:
            self._listener.close()

    def connect(self, host: str, port: int) -> None:
        """Every other rank: connect to rank 0."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = socket.create_connection((host, port), timeout=5)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise PeerLost(f"cannot reach rank 0's doorbell at {host}:{port}: {exc}") from exc
                time.sleep(0.2)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(struct.pack("!I", self.rank))
        conn.settimeout(None)
        self._conn = conn

    # -- rank 0 -----------------------------------------------------------
    def ring(self) -> None:
        self._send_all(RING)

    def _send_all(self, byte: bytes) -> None:
        with self._lock:
            for rank, conn in list(self._peers.items()):
                try:
                    conn.sendall(byte)
                except OSError as exc:
                    raise PeerLost(f"rank {rank} is gone ({exc})") from exc

    def watch_peers(self, on_lost: Callable[[str], None]) -> None:
        """Rank 0: a thread that sends heartbeats and reports a peer whose socket closes."""
        def run():
            interval = max(0.5, self.timeout / 4)
            while not self._closed:
                conns = list(self._peers.items())
                try:
                    readable, _, _ = select.select([c for _, c in conns], [], [], interval)
                except (OSError, ValueError):  # closed under us: the group is stopping
                    return
                if self._closed:
                    return
                for rank, conn in conns:
                    if conn in readable:  # peers never write: readable means closed or broken
                        try:
                            data = conn.recv(1)
                        except OSError:
                            data = b""
                        if not data:
                            on_lost(f"rank {rank} disconnected (its process ended)")
                            return
                try:
                    self._send_all(BEAT)
                except PeerLost as exc:
                    on_lost(str(exc))
                    return

        threading.Thread(target=run, name="vllm-mlx-doorbell", daemon=True).start()

    # -- other ranks ---------------------------------------------------------
    def wait(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """Block (no spinning) until rank 0 rings. Raises PeerLost when rank 0 is gone or
        silent for longer than the timeout (it sends heartbeats while alive)."""
        conn = self._conn
        assert conn is not None
        while True:
            ready, _, _ = select.select([conn], [], [], self.timeout)
            if not ready:
                raise PeerLost(f"rank 0 sent nothing for {self.timeout:g} s (hung?)")
            try:
                data = conn.recv(64)
            except OSError as exc:
                raise PeerLost(f"rank 0 is gone ({exc})") from exc
            if not data:
                raise PeerLost("rank 0 closed the connection (its process ended)")
            if RING in data:
                # Rings are counted one per idle period; a ring never shares a read with another ring
                # because rank 0 rings only after every rank went idle and answered the previous one.
                return

    def close(self) -> None:
        self._closed = True
        for conn in [*self._peers.values(), self._conn]:
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf
