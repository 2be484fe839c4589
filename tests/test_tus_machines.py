"""Resumable uploads on several machines (issue 20, item 3): two web processes, each in an empty directory of its
own, on PostgreSQL + Redis + SeaweedFS, with a worker; an upload's requests alternate between the two webs, and
a tuspy upload cut off on one web resumes on the other. The bytes go to an S3 multipart upload (5 MiB parts, the
smaller pieces waiting in a tail object), never to a web's own disk, and nothing is left behind once done.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Service
from test_machines import Cluster, local_files
from tus_helpers import CuttingProxy, noise_bmp, tus_uploader

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def webs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Service, Service, Any, str]]:
    """(web a, web b, the S3 client, the bucket): the cluster of tests/test_machines.py and a second web."""
    seaweedfs = request.getfixturevalue("seaweedfs")
    bucket = seaweedfs.new_bucket()
    env = {
        "APERCU_DATABASE_URL": request.getfixturevalue("fresh_postgres_url"),
        "APERCU_BROKER_URL": request.getfixturevalue("redis_url"),
        "APERCU_QUEUE": f"tus-{uuid.uuid4().hex[:8]}",
        **seaweedfs.service_env(bucket),
    }
    cluster = Cluster(tmp_path, env)
    other = Service(tmp_path / "web-b" / "apercu-data", env)
    try:
        cluster.start()
        other.start("web")
        yield cluster.web, other, seaweedfs.client(), bucket
    finally:
        other.stop()
        cluster.stop()


def patch(web: Service, path: str, offset: int, piece: bytes) -> Any:
    return web.request("PATCH", path, piece, TUS | {"Upload-Offset": str(offset),
                                                    "Content-Type": "application/offset+octet-stream"})


def in_flight(client: Any, bucket: str) -> tuple[list[str], list[str]]:
    """The resumable uploads' objects and multipart uploads in the bucket."""
    objects = client.list_objects_v2(Bucket=bucket, Prefix="apercu/uploads/").get("Contents", [])
    multipart = client.list_multipart_uploads(Bucket=bucket, Prefix="apercu/uploads/").get("Uploads", [])
    return [o["Key"] for o in objects], [u["Key"] for u in multipart]


def test_requests_alternating_between_two_webs(webs: tuple[Service, Service, Any, str]) -> None:
    web_a, web_b, client, bucket = webs
    data = noise_bmp(13)  # two parts of 6 MiB, and the rest
    name = base64.b64encode(b"alternating.bmp").decode()
    created = web_a.request("POST", "/uploads/", headers=TUS | {"Upload-Length": str(len(data)),
                                                                "Upload-Metadata": f"filename {name}"})
    assert created.status == 201, created.body
    path = created.headers["Location"]
    upload_id = path.rsplit("/", 1)[1]
    offset, answers, chunk = 0, [], 2 * MIB
    for number, start in enumerate(range(0, len(data), chunk)):
        web = (web_a, web_b)[number % 2]
        answer = patch(web, path, offset, data[start:start + chunk])
        assert answer.status == 204, (number, answer.status, answer.body)
        offset = int(answer.headers["Upload-Offset"])
        answers.append(answer)
        if number == 0:  # 2 MiB: under S3's smallest part, so it waits in a tail object
            assert in_flight(client, bucket) == ([f"apercu/uploads/{upload_id}/tail-{chunk}"], [])
        if number == 2:  # 6 MiB: a part
            objects, multipart = in_flight(client, bucket)
            assert (objects, multipart) == ([], [f"apercu/uploads/{upload_id}/data"])
        if offset < len(data):
            assert web_b.request("HEAD", path, headers=TUS).headers["Upload-Offset"] == str(offset)
    image_id = answers[-1].headers["Apercu-Image-Id"]
    assert web_b.request("HEAD", path, headers=TUS).headers["Apercu-Image-Id"] == image_id
    image = web_a.wait_final(image_id, timeout=120)
    assert image["status"] == "success" and image["filename"] == "alternating.bmp"
    assert image["metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert in_flight(client, bucket) == ([], [])  # nothing left behind
    assert local_files(web_a) == [] and local_files(web_b) == []


def test_tuspy_cut_off_on_one_web_resumes_on_the_other(webs: tuple[Service, Service, Any, str]) -> None:
    web_a, web_b, client, bucket = webs
    data = noise_bmp(9)
    proxy = CuttingProxy(web_a.port, cut_after=int(6.5 * MIB))
    first = tus_uploader(proxy.url, data, chunk_size=2 * MIB)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the connection went
        first.upload()
    proxy.close()
    path = "/uploads/" + first.url.rsplit("/", 1)[1]
    again = tus_uploader(f"http://127.0.0.1:{web_b.port}", data, 2 * MIB, url=f"http://127.0.0.1:{web_b.port}{path}")
    assert 0 < again.offset < len(data)
    again.upload()
    image_id = web_b.request("HEAD", path, headers=TUS).headers["Apercu-Image-Id"]
    image = web_b.wait_final(image_id, timeout=120)
    assert image["status"] == "success" and image["metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert in_flight(client, bucket) == ([], [])
