"""What the resumable-upload tests share: a big image, a TCP proxy that cuts a connection mid-transfer (as a train
entering a tunnel does), and a tus client (tuspy) set up for apercu."""

from __future__ import annotations

import io
import math
import os
import socket
import threading
from typing import Any

from PIL import Image


def noise_bmp(megabytes: float) -> bytes:
    """An uncompressed image of about this many MB (noise: no two uploads alike)."""
    side = int(math.sqrt(megabytes * 1e6 / 3))
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "BMP")
    return out.getvalue()


class CuttingProxy:
    """Forwards loopback connections to `port`; once `cut_after` bytes went upstream in all, it closes both ends of
    the connection carrying them, once (later connections pass untouched)."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.target, self.cut_after = port, cut_after
        self.forwarded, self.cuts = 0, 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted and self._cut_now(len(data)):
                    for sock in (source, sink):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _cut_now(self, size: int) -> bool:
        with self.lock:
            self.forwarded += size
            if self.cuts == 0 and self.forwarded > self.cut_after:
                self.cuts = 1
                return True
            return False

    def close(self) -> None:
        self.listener.close()


def tus_uploader(base_url: str, data: bytes, chunk_size: int, url: str | None = None,
                 headers: dict[str, str] | None = None) -> Any:
    """tuspy's uploader of `data` to `base_url`/uploads/ (or resuming the upload at `url`), sha1 checksums on."""
    from tusclient import client

    tus = client.TusClient(f"{base_url}/uploads/", headers=headers or {})
    return tus.uploader(file_stream=io.BytesIO(data), chunk_size=chunk_size, url=url,
                        metadata={"filename": "panorama.bmp"}, upload_checksum=True)
