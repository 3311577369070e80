"""DICOM Part 10 files in an S3-API object store (AWS S3, MinIO, Ceph RGW, ...), by URL.

    s3://bucket[/prefix][?endpoint=http://127.0.0.1:9000&region=us-east-1&timeout=30]
    s3://ACCESS_KEY:SECRET_KEY@bucket/prefix?endpoint=...     (userinfo percent-encoded)

Objects are keyed ``<prefix>/sha256/ab/cd/<digest>.dcm``, the file store's layout, so a
directory tree and a bucket can be copied into one another. Without ``endpoint`` the URL means
AWS S3 (``https://s3.amazonaws.com``). Credentials come from the URL's userinfo, else from the
standard ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``)
environment variables; none at all means anonymous requests. They are never logged:
:meth:`S3Store.describe` and every error name only bucket, prefix and endpoint.

Why it is safe for the archive's crash recovery: every object is written with one PUT (never a
multipart upload, which a crash could leave half done), and S3 makes an object visible only
once its whole body has arrived, checked against the ``x-amz-content-sha256`` the request
was signed with. A key is therefore absent or complete, as with the file store's rename.

Why these timeouts: the client library's defaults (5 minutes, 5 retries) would hold a
C-STORE far beyond a modality's DIMSE timeout when the server is down; here a refused
connection fails in well under a second and a silent server after ``timeout`` seconds (twice,
with one retry), and the archive answers 0xA700 (out of resources), so the sender retries
later. The client is the MinIO Python SDK (``minio``): it speaks plain S3 (Signature V4) to
any of these servers and is far lighter than boto3/botocore.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import MAX_PART_SIZE, MIN_PART_SIZE

from fhirhub.adapters.dicom.content_store import HASH, StoreUnavailable, check_digest, digest_path

T = TypeVar("T")

#: S3 error codes that mean "no such object" (HEAD answers NotFound without a body).
MISSING = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
URL_PARAMETERS = frozenset({"endpoint", "region", "timeout"})
DEFAULT_TIMEOUT = 30.0
CONTENT_TYPE = "application/dicom"  # PS3.18 / RFC 3240


class S3Store:
    """The :class:`~.content_store.ContentStore` interface over one bucket and prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str = "https://s3.amazonaws.com",
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 32,
    ) -> None:
        endpoint_url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if endpoint_url.scheme not in ("http", "https") or not endpoint_url.netloc:
            raise ValueError(f"S3 endpoint must be http(s)://host[:port], got {endpoint!r}")
        if not bucket:
            raise ValueError("S3 object store URL names no bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = f"{endpoint_url.scheme}://{endpoint_url.netloc}"
        self.timeout = timeout
        http = urllib3.PoolManager(
            # one connection per association that may be storing at the same time
            maxsize=max_connections,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=urllib3.Retry(
                total=1,  # one retry: a dropped keep-alive connection, a 503 SlowDown
                backoff_factor=0.1,
                status_forcelist=(500, 502, 503, 504),
            ),
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self._client = Minio(
            endpoint_url.netloc,
            access_key=access_key or None,
            secret_key=secret_key if access_key else None,
            session_token=session_token or None,
            secure=endpoint_url.scheme == "https",
            # a known region spares a GetBucketLocation round trip before the first request
            region=region or "us-east-1",
            http_client=http,
        )

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3":
            raise ValueError("An S3 object store URL starts with s3://")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - URL_PARAMETERS)
        if unknown:
            raise ValueError(
                f"Unknown parameter(s) {', '.join(unknown)} in the S3 object store URL "
                f"(known: {', '.join(sorted(URL_PARAMETERS))})"
            )
        # userinfo first, then the AWS SDKs' standard environment variables
        access_key = unquote(parts.username) if parts.username else None
        secret_key = unquote(parts.password) if parts.password else None
        if access_key is None:
            access_key = os.environ.get("AWS_ACCESS_KEY_ID")
            secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if access_key and not secret_key:
            raise ValueError("S3 credentials: an access key without a secret key")
        return cls(
            parts.hostname or "",
            unquote(parts.path),
            endpoint=query.get("endpoint", "https://s3.amazonaws.com"),
            region=query.get("region")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION"),
            access_key=access_key,
            secret_key=secret_key,
            session_token=os.environ.get("AWS_SESSION_TOKEN") if parts.username is None else None,
            timeout=float(query.get("timeout", DEFAULT_TIMEOUT)),
        )

    # -- the ContentStore interface ------------------------------------------------------------

    def key_for(self, digest: str) -> str:
        key = digest_path(digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, data: bytes) -> str:
        """One PUT of the whole object (see the module docstring). Unconditional: the key is
        the content's digest, so writing it again stores the same bytes again, and the common
        case (a new instance) costs one round trip instead of HEAD + PUT."""
        digest = hashlib.sha256(data).hexdigest()
        if len(data) > MAX_PART_SIZE:
            raise StoreUnavailable(f"{len(data)} bytes: more than one S3 PUT can hold (5 GiB)")
        self._call(
            "put",
            lambda: self._client.put_object(
                self.bucket,
                self.key_for(digest),
                io.BytesIO(data),
                len(data),
                content_type=CONTENT_TYPE,
                part_size=max(len(data), MIN_PART_SIZE),  # one part: a single plain PUT
            ),
        )
        return digest

    def get(self, digest: str) -> bytes:
        def fetch() -> bytes:
            response = self._client.get_object(self.bucket, self.key_for(digest))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call("get", fetch, digest)

    def open(self, digest: str) -> BinaryIO:
        return io.BytesIO(self.get(digest))

    def exists(self, digest: str) -> bool:
        try:
            self._call("stat", lambda: self._client.stat_object(self.bucket, self.key_for(digest)))
        except FileNotFoundError:
            return False
        return True

    def delete(self, digest: str) -> None:
        self._call("delete", lambda: self._client.remove_object(self.bucket, self.key_for(digest)))

    def stored(self) -> Iterator[tuple[str, int]]:
        prefix = f"{self.prefix}/{HASH}/" if self.prefix else f"{HASH}/"
        listing = iter(
            self._call(
                "list", lambda: self._client.list_objects(self.bucket, prefix, recursive=True)
            )
        )
        while True:
            item = self._call("list", lambda: next(listing, None))
            if item is None:
                return
            name = str(item.object_name or "")
            if not name.endswith(".dcm"):
                continue
            try:
                digest = check_digest(name.rsplit("/", 1)[-1][: -len(".dcm")])
            except ValueError:
                continue
            yield digest, int(item.size or 0)

    def check(self) -> bool:
        try:
            return bool(self._call("check", lambda: self._client.bucket_exists(self.bucket)))
        except OSError:
            return False

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {self.endpoint}"

    def close(self) -> None:
        self._client._http.clear()

    def __repr__(self) -> str:
        return f"S3Store({self.describe()!r})"

    # -- errors --------------------------------------------------------------------------------

    def _call(self, action: str, request: Callable[[], T], digest: str | None = None) -> T:
        """Run one client call; a missing object becomes ``FileNotFoundError`` (as with files),
        anything else that stops the request :class:`StoreUnavailable` naming the store but
        never its credentials."""
        try:
            return request()
        except S3Error as error:
            if error.code in MISSING:
                raise FileNotFoundError(f"{self.describe()}: no object for {digest}") from None
            raise StoreUnavailable(
                f"{self.describe()}: {action} refused: {error.code} {error.message or ''}".strip()
            ) from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise StoreUnavailable(
                f"{self.describe()}: {action} failed: {type(reason).__name__}: {reason}"
            ) from None
