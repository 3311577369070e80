"""The S3 object store backend over real HTTP (moto's S3 server on loopback): the content store
contract on both backends, credentials kept out of logs, outages answered with a DICOM failure
status instead of a hang, and an upload cut short leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage  # type: ignore[attr-defined]

from fhirhub.adapters.dicom.archive import DicomArchive, InstanceRejected, existing_archive
from fhirhub.adapters.dicom.config import STORE_ENV, object_store_url
from fhirhub.adapters.dicom.content_store import ContentStore, StoreUnavailable
from fhirhub.adapters.dicom.content_stores import open_content_store
from fhirhub.adapters.dicom.file_store import FileStore
from fhirhub.adapters.dicom.instance_index import ALL_TENANTS
from fhirhub.adapters.dicom.plugin import dicom_node
from fhirhub.adapters.dicom.s3_store import S3Store
from fhirhub.core.hub import build_hub
from tests.adapters.dicom.conftest import (
    CLIENT_AET,
    NODE_AET,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    TEST_FILES,
    S3Server,
    free_port,
    node_settings,
)

# -- configuration ----------------------------------------------------------------------------


def test_url_names_bucket_prefix_endpoint_and_keeps_secrets_out_of_descriptions(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, sqlite_url: str
) -> None:
    url = "s3://AKIDEXAMPLE:wJalr%2FK7MDENG@images/site-a/dicom?endpoint=http://127.0.0.1:9000&region=eu-west-1&timeout=5"
    store = S3Store.from_url(url)
    assert (store.bucket, store.prefix, store.endpoint) == (
        "images",
        "site-a/dicom",
        "http://127.0.0.1:9000",
    )
    assert store.key_for("ab" * 32) == f"site-a/dicom/sha256/ab/ab/{'ab' * 32}.dcm"
    credentials = store._client._provider.retrieve()  # type: ignore[union-attr]
    assert (credentials.access_key, credentials.secret_key) == ("AKIDEXAMPLE", "wJalr/K7MDENG")
    for text in (store.describe(), repr(store)):
        assert "wJalr" not in text and "AKIDEXAMPLE" not in text
    assert store.describe() == "s3://images/site-a/dicom at http://127.0.0.1:9000"

    # the archive logs where its files go: without the credentials
    caplog.set_level(logging.INFO, logger="fhirhub.dicom")
    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off", object_store=url))
    archive = DicomArchive(hub)
    try:
        assert isinstance(archive.files, S3Store)
        assert "s3://images/site-a/dicom" in caplog.text
        assert "wJalr" not in caplog.text and "AKIDEXAMPLE" not in caplog.text
    finally:
        archive.close()
        hub.store.engine.dispose()

    with pytest.raises(ValueError, match="Unknown parameter"):
        S3Store.from_url("s3://images?endpont=http://127.0.0.1:9000")
    with pytest.raises(ValueError, match="s3:// or file://"):
        open_content_store("ftp://images", tmp_path)
    assert isinstance(open_content_store("", tmp_path / "files"), FileStore)
    assert open_content_store(f"file://{tmp_path}/elsewhere", tmp_path).describe() == str(
        tmp_path / "elsewhere"
    )


def test_credentials_and_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv(STORE_ENV, "s3://bucket/p?endpoint=http://127.0.0.1:9")
    settings = node_settings(sqlite_url, tmp_path, port="off")
    assert object_store_url(settings) == "s3://bucket/p?endpoint=http://127.0.0.1:9"
    store = S3Store.from_url(object_store_url(settings))
    credentials = store._client._provider.retrieve()  # type: ignore[union-attr]
    assert (credentials.access_key, credentials.secret_key) == ("from-env", "env-secret")
    # one precedence for every setting: the environment wins over the plugin's TOML table
    configured = node_settings(sqlite_url, tmp_path, port="off", object_store="s3://other")
    assert object_store_url(configured) == "s3://bucket/p?endpoint=http://127.0.0.1:9"
    monkeypatch.delenv(STORE_ENV)
    assert object_store_url(configured) == "s3://other"


# -- the contract, on both backends ------------------------------------------------------------


@pytest.fixture(params=["file", "s3"])
def content_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContentStore]:
    url = "" if request.param == "file" else request.getfixturevalue("s3_url")
    store = open_content_store(url, tmp_path / "files")
    yield store
    store.close()


def test_content_store_contract(content_store: ContentStore, ct_small: Path) -> None:
    data = ct_small.read_bytes()
    digest = content_store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert content_store.put(data) == digest  # idempotent
    assert content_store.exists(digest)
    assert content_store.get(digest) == data
    with content_store.open(digest) as handle:
        assert pydicom.dcmread(handle).SOPInstanceUID == pydicom.dcmread(ct_small).SOPInstanceUID
    assert list(content_store.stored()) == [(digest, len(data))]
    assert content_store.check()

    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not content_store.exists(missing)
    with pytest.raises(FileNotFoundError):
        content_store.get(missing)
    with pytest.raises(ValueError):
        content_store.get("../../etc/passwd")

    content_store.delete(digest)
    content_store.delete(digest)  # absent already: no error
    assert not content_store.exists(digest)
    assert list(content_store.stored()) == []


def test_objects_are_laid_out_like_the_file_store(s3_server: S3Server, ct_small: Path) -> None:
    bucket = s3_server.new_bucket()
    store = S3Store.from_url(s3_server.url(bucket, prefix="site-a"))
    data = ct_small.read_bytes()
    digest = store.put(data)
    (item,) = s3_server.client().list_objects(bucket, recursive=True)
    assert item.object_name == f"site-a/sha256/{digest[:2]}/{digest[2:4]}/{digest}.dcm"
    stat = s3_server.client().stat_object(bucket, item.object_name)
    assert stat.content_type == "application/dicom" and stat.size == len(data)


# -- outages -----------------------------------------------------------------------------------


def send(port: int, path: Path, sop_class: str) -> int:
    """One C-STORE with pynetdicom as the modality; the DIMSE status it got back."""
    ae = AE(ae_title=CLIENT_AET)
    ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(pydicom.dcmread(path)).Status)
    finally:
        assoc.release()


def test_store_down_answers_out_of_resources_and_writes_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    from fhirhub.adapters.dicom.config import DicomConfig
    from fhirhub.adapters.dicom.scp import DicomNode

    server = S3Server(free_port()).start()
    bucket = server.new_bucket()
    settings = node_settings(
        sqlite_url, tmp_path, object_store=server.url(bucket), allowed_aes=[CLIENT_AET]
    )
    hub = build_hub(settings)
    archive = DicomArchive(hub)
    node = DicomNode(archive, DicomConfig.from_settings(settings))
    port = node.start(host="127.0.0.1", port=0)
    ct, mr = TEST_FILES / "CT_small.dcm", TEST_FILES / "MR_small.dcm"
    try:
        assert send(port, ct, CTImageStorage) == 0x0000
        server.stop()  # the S3 server goes away
        started = time.monotonic()
        assert send(port, mr, MRImageStorage) == 0xA700  # out of resources: retry later
        assert time.monotonic() - started < 10  # an answer, not a hang
        assert archive.drain()
        mr_uid = str(pydicom.dcmread(mr).SOPInstanceUID)
        assert (
            archive.index.instances_matching(ALL_TENANTS, "IMAGE", {"SOPInstanceUID": mr_uid}) == []
        )
        assert archive.index.count() == 1 and archive.index.unrecorded() == []
        assert not archive.files.check()

        # back, but empty (moto keeps nothing): the missing bucket is refused the same way
        server.start()
        assert send(port, mr, MRImageStorage) == 0xA700
        server.client().make_bucket(bucket)
        assert send(port, mr, MRImageStorage) == 0x0000
        (row,) = archive.index.instances_matching(ALL_TENANTS, "IMAGE", {"SOPInstanceUID": mr_uid})
        assert server.client().stat_object(bucket, archive.files.key_for(row.digest))  # type: ignore[attr-defined]
    finally:
        node.stop()
        archive.close()
        server.stop()
        hub.store.engine.dispose()


class SilentServer:
    """Accepts TCP connections and never answers: a hung S3 endpoint."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


def test_silent_store_times_out_with_a_failure_status(
    sqlite_url: str, tmp_path: Path, ct_small: Path
) -> None:
    silent = SilentServer()
    url = f"s3://bucket/dicom?endpoint=http://127.0.0.1:{silent.port}&timeout=1"
    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off", object_store=url))
    archive = DicomArchive(hub)
    try:
        started = time.monotonic()
        with pytest.raises(InstanceRejected) as rejected:
            archive.store_part10(ct_small.read_bytes(), wait=False)
        assert rejected.value.status == 0xA700
        assert "ReadTimeout" in str(rejected.value) or "timed out" in str(rejected.value)
        assert time.monotonic() - started < 8  # timeout=1 s, one retry
        assert archive.index.count() == 0
    finally:
        archive.close()
        silent.close()
        hub.store.engine.dispose()


class CuttingProxy:
    """A loopback TCP proxy to the S3 server that forwards the first ``limit`` bytes of each
    request and then drops both connections: an upload cut off mid-body."""

    def __init__(self, upstream_port: int, limit: int) -> None:
        self.upstream_port = upstream_port
        self.limit = limit
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cut = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        sent = 0
        try:
            while sent < self.limit:
                chunk = client.recv(min(65536, self.limit - sent))
                if not chunk:
                    return
                upstream.sendall(chunk)
                sent += len(chunk)
            self.cut += 1
        finally:
            upstream.close()
            client.close()

    def close(self) -> None:
        self.sock.close()


def test_upload_cut_short_leaves_no_object(
    s3_server: S3Server, sqlite_url: str, tmp_path: Path, ct_small: Path
) -> None:
    bucket = s3_server.new_bucket()
    data = ct_small.read_bytes()
    proxy = CuttingProxy(s3_server.port, limit=len(data) // 2)  # headers + part of the body
    url = s3_server.url(bucket, endpoint=f"http://127.0.0.1:{proxy.port}")
    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off", object_store=url))
    archive = DicomArchive(hub)
    try:
        with pytest.raises(InstanceRejected) as rejected:
            archive.store_part10(data, wait=False)
        assert rejected.value.status == 0xA700 and proxy.cut >= 1
        assert list(s3_server.client().list_objects(bucket, recursive=True)) == []
        assert archive.index.count() == 0
        # the same store through a whole connection: stored, complete
        direct = S3Store.from_url(s3_server.url(bucket))
        assert direct.get(direct.put(data)) == data
    finally:
        archive.close()
        proxy.close()
        hub.store.engine.dispose()


def test_unavailable_store_errors_never_carry_credentials(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    store = S3Store.from_url(
        f"s3://{S3_ACCESS_KEY}:{S3_SECRET_KEY.replace('/', '%2F').replace('+', '%2B').replace('=', '%3D')}"
        f"@bucket?endpoint=http://127.0.0.1:{port}"
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as error:
        store.put(b"DICM")
    assert time.monotonic() - started < 5  # a refused connection fails fast
    assert S3_SECRET_KEY not in str(error.value) and "s3cr3t" not in str(error.value)
    assert f"127.0.0.1:{port}" in str(error.value)


# -- end to end: dcmtk in, DICOMweb and C-GET out ----------------------------------------------


@pytest.mark.slow
def test_storescu_into_s3_then_wado_rs_and_c_get_return_the_same_bytes(
    s3_server: S3Server, sqlite_url: str, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from fhirhub.adapters.dicom.dicomweb import parse_multipart
    from fhirhub.core.http.app import create_app
    from tests.adapters.dicom.conftest import dicomdir_files
    from tests.adapters.dicom.test_archive import current, versions
    from tests.adapters.dicom.test_dcmtk_clients import dcmtk

    bucket = s3_server.new_bucket()
    settings = node_settings(
        sqlite_url,
        tmp_path,
        object_store=s3_server.url(bucket),
        allowed_aes=["STORESCU", "GETSCU"],
    )
    hub = build_hub(settings)
    files = dicomdir_files()
    with TestClient(create_app(hub=hub)) as client:
        archive = existing_archive(hub)
        assert archive is not None
        assert isinstance(archive.files, S3Store)
        node = dicom_node(hub)
        assert node is not None
        port = str(node.server.server_address[1])
        sent = dcmtk(
            "storescu", "-aet", "STORESCU", "-aec", NODE_AET, "127.0.0.1", port, *map(str, files)
        )
        assert sent.returncode == 0 and "Failed" not in sent.stderr, sent.stderr
        assert archive.drain()
        bucket_objects = {
            o.object_name: o.etag for o in s3_server.client().list_objects(bucket, recursive=True)
        }
        assert len(bucket_objects) == len(files) == archive.index.count()
        assert sum(s["numberOfInstances"] for s in current(hub, "ImagingStudy")) == len(files)
        assert client.get("/healthz").json()["checks"]["dicom-store"] == "ok"

        # WADO-RS: every instance of a study, byte for byte what the bucket holds
        study_uid = next(
            s["StudyInstanceUID"]
            for s in archive.index.find(ALL_TENANTS, "STUDY", {"PatientID": "98890234"})
            if s["NumberOfStudyRelatedInstances"] == 11
        )
        response = client.get(f"/plugins/dicom/dicomweb/studies/{study_uid}")
        assert response.status_code == 200
        parts = parse_multipart(response.content, response.headers["content-type"])
        assert len(parts) == 11
        originals = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in files}
        for part in parts:
            digest = hashlib.sha256(part).hexdigest()
            key = archive.files.key_for(digest)  # type: ignore[attr-defined]
            stored = s3_server.client().get_object(bucket, key)
            assert stored.read() == part
            stored.close()
            received = pydicom.dcmread(io.BytesIO(part))
            sent_ds = pydicom.dcmread(originals[str(received.SOPInstanceUID)])
            assert received == sent_ds  # the data set storescu sent, element for element
        rendered = client.get(
            f"/plugins/dicom/dicomweb/studies/{study_uid}/series/"
            f"{received.SeriesInstanceUID}/instances/{received.SOPInstanceUID}/rendered"
        )
        assert rendered.status_code == 200 and rendered.content.startswith(b"\x89PNG")

        # C-GET: the same data sets come back over DICOM
        got = tmp_path / "got"
        got.mkdir()
        get = dcmtk(
            "getscu", "-S", "-aet", "GETSCU", "-aec", NODE_AET, "-od", str(got),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
            "127.0.0.1", port,
        )  # fmt: skip
        assert get.returncode == 0, get.stderr
        retrieved = [pydicom.dcmread(p) for p in got.iterdir()]
        assert len(retrieved) == 11
        for ds in retrieved:
            assert ds == pydicom.dcmread(originals[str(ds.SOPInstanceUID)])

        # sending everything again: nothing new in FHIR or in the bucket
        before = versions(hub)
        again = dcmtk(
            "storescu", "-aet", "STORESCU", "-aec", NODE_AET, "127.0.0.1", port, *map(str, files)
        )
        assert again.returncode == 0 and "Failed" not in again.stderr, again.stderr
        assert archive.drain() and versions(hub) == before
        assert {
            o.object_name: o.etag for o in s3_server.client().list_objects(bucket, recursive=True)
        } == bucket_objects

        # the catalogue can be rebuilt from the bucket alone
        assert archive.rebuild_index() == len(files)
        assert archive.index.count() == len(files)
    hub.store.engine.dispose()


def test_dicomweb_answers_503_while_the_store_is_down(
    sqlite_url: str, tmp_path: Path, ct_small: Path
) -> None:
    from fastapi.testclient import TestClient

    from fhirhub.adapters.dicom.archive import archive_for
    from fhirhub.core.http.app import create_app

    server = S3Server(free_port()).start()
    url = server.url(server.new_bucket())
    hub = build_hub(node_settings(sqlite_url, tmp_path, port="off", object_store=url))
    ds = pydicom.dcmread(ct_small)
    instance = (
        f"/plugins/dicom/dicomweb/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    try:
        with TestClient(create_app(hub=hub)) as client:
            archive_for(hub).store_part10(ct_small.read_bytes())
            assert client.get(instance).status_code == 200
            assert client.get("/healthz").json()["checks"]["dicom-store"] == "ok"
            server.stop()
            for path in (instance, f"{instance}/metadata", f"{instance}/rendered"):
                response = client.get(path)
                assert response.status_code == 503, path
                assert response.headers["retry-after"] and "s3://" in response.text
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["checks"]["dicom-store"] == "failing"
    finally:
        server.stop()
        hub.store.engine.dispose()
