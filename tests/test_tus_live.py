"""Resumable uploads with a real tus client (tuspy, from PyPI) against a real `apercu serve` (issue 20, item 5):
the connection is cut mid-transfer, the client asks where to resume and finishes, and the image is the file's;
two PATCHes racing for one upload: one wins, the other gets 409; /metrics counts the resumed requests.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Service
from tus_helpers import CuttingProxy, noise_bmp, tus_uploader

MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "apercu-data").start("serve")
    try:
        yield svc
    finally:
        svc.stop()


def resumed_count(svc: Service) -> float:
    for line in svc.get("/metrics").body.decode().splitlines():
        if line.startswith("apercu_uploads_resumed_total"):
            return float(line.split()[-1])
    return 0.0


def test_tuspy_resumes_after_the_connection_is_cut(served: Service) -> None:
    data = noise_bmp(6)
    proxy = CuttingProxy(served.port, cut_after=int(3.5 * MIB))
    before = resumed_count(served)
    first = tus_uploader(proxy.url, data, chunk_size=MIB)
    with pytest.raises(Exception):  # noqa: B017, PT011 - requests' or tuspy's: the connection went
        first.upload()
    assert proxy.cuts == 1
    url = first.url
    assert url is not None and "/uploads/" in url
    again = tus_uploader(proxy.url, data, chunk_size=MIB, url=url)  # HEAD: where to resume
    assert 0 < again.offset < len(data) and again.offset % MIB == 0  # whole requests only: the cut one is lost
    again.upload()
    status = served.request("HEAD", url.split(str(proxy.port), 1)[1], headers=TUS)
    image_id = status.headers["Apercu-Image-Id"]
    assert status.headers["Link"] == f'</images/{image_id}>; rel="image"'
    image = served.wait_final(image_id)
    assert image["status"] == "success", image
    assert image["filename"] == "panorama.bmp"
    assert image["metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert resumed_count(served) >= before + 1
    proxy.close()


def test_two_patches_racing_for_one_upload_one_wins(served: Service) -> None:
    data = noise_bmp(8)
    created = served.request("POST", "/uploads/", headers=TUS | {"Upload-Length": str(len(data))})
    path = created.headers["Location"]
    statuses: list[int] = []

    def send() -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{served.port}{path}", data=data, method="PATCH",
            headers=TUS | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)

    racers = [threading.Thread(target=send) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=180)
    assert sorted(statuses) == [204, 409]
    assert "Apercu-Image-Id" in served.request("HEAD", path, headers=TUS).headers
