"""The registry store: images in any OCI registry, by the distribution spec, over httpx.

Push: each blob is checked with ``HEAD`` and, when missing, uploaded in one ``POST`` + ``PUT ?digest=``;
then the manifest is ``PUT`` under the image's tag (``latest``, or the tag in ``name:tag``). The images
are the directory store's, byte for byte (``oci.build_image``), so a layer has the same reference in
both. Pull is by digest only: the manifest's bytes must hash to the digest asked for, the layer is
streamed into the blob cache (``cache.py``) while it is hashed, and only a blob whose bytes hash to its
digest (and whose size is the manifest's) enters the cache and is unpacked; a wrong one is refused with
``LayerIntegrityError`` and leaves nothing behind. Manifests are cached too, so a pod restarted while
the registry is down still unpacks what it pulled before.

A registry that cannot be reached, answers 5xx, 408 or 429, or breaks a download off is retried with
backoff (0.2 s doubling to 5 s) for ``DORMANT_REGISTRY_RETRY_S`` seconds (default 60); an interrupted
blob download resumes where it stopped (``Range``) when the registry supports it. ``cancel`` (a
``threading.Event``) interrupts those waits. Authentication (``auth.py``): a 401 challenge is answered
once, basic or bearer (tokens cached per repository and actions until they expire); credentials go
only to the registry's own origin and to the token service it names, never to a redirect target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from .auth import Credentials, Token, lookup_credentials, parse_challenge, token_from_response
from .cache import BlobCache, default_cache_dir
from .location import RegistryLocation, insecure_allowed, is_loopback
from .oci import (
    CHUNK,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    FetchCancelled,
    ImageRef,
    LayerDescriptor,
    LayerIntegrityError,
    LayerLimitExceeded,
    LayerNotFound,
    RegistryAuthError,
    RegistryError,
    UnpackLimits,
    app_layer,
    build_image,
    check_digest,
    digest_of,
    unpack_blob,
    unpacked_digest,
)

log = logging.getLogger(__name__)

RETRY_ENV = "DORMANT_REGISTRY_RETRY_S"
CA_FILE_ENV = "DORMANT_REGISTRY_CA_FILE"
DEFAULT_RETRY_S = 60.0
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0
MANIFEST_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, application/vnd.docker.distribution.manifest.v2+json;q=0.5"
_ERROR_BODY_BYTES = 4096
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

T = TypeVar("T")


def retry_s_from_env() -> float:
    raw = os.environ.get(RETRY_ENV, "").strip()
    if not raw:
        return DEFAULT_RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 86_400:
        raise ValueError(f"{RETRY_ENV} must be a number of seconds (0 to 86399), not {raw!r}")
    return value


def _tls_verify() -> ssl.SSLContext | bool:
    ca_file = os.environ.get(CA_FILE_ENV)
    if not ca_file:
        return True
    try:
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{CA_FILE_ENV}={ca_file!r} is not a readable PEM file: {exc}") from None
    return context


class _Transient(Exception):
    """A registry answer worth retrying (5xx, 408, 429)."""


@dataclass(frozen=True, slots=True)
class _Scope:
    repository: str
    actions: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"repository:{self.repository}:{','.join(self.actions)}"


_PULL = ("pull",)
_PUSH = ("pull", "push")


class RegistryStore:
    """Images in the registry at ``location``; pulled blobs kept in ``cache``."""

    def __init__(
        self,
        location: RegistryLocation,
        *,
        limits: UnpackLimits | None = None,
        cache: BlobCache | None = None,
        retry_s: float | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.location = location
        self.limits = limits if limits is not None else UnpackLimits.from_env()
        self.cache = cache if cache is not None else BlobCache(default_cache_dir())
        self.retry_s = retry_s if retry_s is not None else retry_s_from_env()
        found = lookup_credentials(location.host)
        self._credentials: Credentials | None = found.credentials
        self._credentials_note = found.note
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            follow_redirects=True,
            verify=_tls_verify(),
            headers={"User-Agent": "dormant-layers"},
        )
        self._origin = httpx.URL(location.base_url)
        self._auth_lock = threading.Lock()
        self._basic = False
        self._bearer: tuple[str, str] | None = None
        """(realm, service) once the registry asked for bearer tokens."""
        self._tokens: dict[str, Token] = {}

    def __str__(self) -> str:
        return str(self.location)

    def __repr__(self) -> str:
        return f"RegistryStore({str(self.location)!r})"

    def close(self) -> None:
        self._client.close()

    # ---- the store interface ------------------------------------------------------------------

    def push(self, name: str, layer: bytes, *, annotations: dict[str, str] | None = None) -> ImageRef:
        """Upload the image (``build_image``) and tag it: ``name`` (``latest``) or ``name:tag``."""
        image = build_image(name, layer, annotations)
        repository, tag = self.location.repository(name)
        scope = _Scope(repository, _PUSH)
        for blob in (image.layer, image.config):
            self._retrying(f"pushing a blob to {repository}", _bind(self._upload_blob, scope, blob), None)
        self._retrying(
            f"pushing {repository}:{tag}", lambda: self._put_manifest(scope, tag, image.manifest), None
        )
        ref = image.ref
        self.cache.put(ref.manifest_digest, image.manifest)
        return ref

    def tag(self, ref: ImageRef, tag: str) -> None:
        """Tag the image ``ref`` (already in the registry) ``tag`` in its repository."""
        repository, _ = self.location.repository(f"{ref.name.partition(':')[0]}:{tag}")
        manifest = self._manifest(repository, ref.manifest_digest, None)
        scope = _Scope(repository, _PUSH)
        self._retrying(f"tagging {repository}:{tag}", lambda: self._put_manifest(scope, tag, manifest), None)

    def lookup(self, name: str) -> str | None:
        """The manifest digest of ``name``'s tag (``latest`` for a bare name), or None."""
        repository, tag = self.location.repository(name)
        try:
            manifest = self._fetch_manifest(repository, tag, None)
        except LayerNotFound:
            return None
        return digest_of(manifest)

    def resolve(self, ref: str | ImageRef, *, cancel: threading.Event | None = None) -> ImageRef:
        """Read and verify the manifest of ``ref`` (``name@digest``, ``ImageRef`` or a name to look up)."""
        return self._resolve(ref, cancel)[0]

    def pull_layer(self, ref: str | ImageRef) -> bytes:
        """The verified bytes of the image's layer, in memory: ``unpack`` streams instead."""
        resolved, layer = self._resolve(ref, None)
        path = self._blob(self._repository(resolved), layer, None)
        try:
            data = path.read_bytes()
        finally:
            self.cache.release(layer.digest)
        if digest_of(data) != layer.digest:
            self.cache.discard(layer.digest)
            raise LayerIntegrityError(f"cached blob {layer.digest} is corrupt; it was removed, pull again")
        return data

    def unpack(self, ref: str | ImageRef, dest: Path, *, cancel: threading.Event | None = None) -> Path:
        """Pull (or take from the cache) and extract the verified layer into ``dest`` atomically; a no-op
        when ``dest`` already holds it."""
        resolved, layer = self._resolve(ref, cancel)
        if unpacked_digest(Path(dest)) == layer.digest:
            return Path(dest)
        repository = self._repository(resolved)
        for attempt in (1, 2):
            path = self._blob(repository, layer, cancel)
            try:
                return unpack_blob(path, resolved, dest, self.limits)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                # Another process sharing the cache evicted it in between: pull it again.
            except LayerIntegrityError:
                if attempt == 2 or _file_digest(path) == layer.digest:
                    raise
                # Corrupted in the cache since it was verified (the disk): drop it, pull it again.
                log.warning("cached blob %s is corrupt; pulling it again", layer.digest)
                self.cache.discard(layer.digest)
            finally:
                self.cache.release(layer.digest)
        raise AssertionError("unreachable")

    # ---- resolving ---------------------------------------------------------------------------

    def _repository(self, ref: ImageRef) -> str:
        return self.location.repository(ref.name.partition(":")[0])[0]

    def _resolve(
        self, ref: str | ImageRef, cancel: threading.Event | None
    ) -> tuple[ImageRef, LayerDescriptor]:
        if isinstance(ref, str):
            if "@" in ref:
                ref = ImageRef.parse(ref)
            else:
                digest = self.lookup(ref)
                if digest is None:
                    raise LayerNotFound(f"no image named {ref!r} in {self.location}")
                ref = ImageRef(ref, digest)
        manifest = self._manifest(self._repository(ref), ref.manifest_digest, cancel)
        layer = app_layer(manifest, ref)
        return ImageRef(ref.name, ref.manifest_digest, layer.digest), layer

    def _manifest(self, repository: str, digest: str, cancel: threading.Event | None) -> bytes:
        """The verified manifest ``digest``: from the cache, else pulled (and cached)."""
        check_digest(digest)
        cached = self.cache.get(digest)
        if cached is not None:
            with contextlib.suppress(FileNotFoundError):
                data = cached.read_bytes()
                if digest_of(data) == digest:
                    return data
                self.cache.discard(digest)
        data = self._fetch_manifest(repository, digest, cancel)
        actual = digest_of(data)
        if actual != digest:
            raise LayerIntegrityError(
                f"manifest {digest} from {self.location.host}/{repository} is corrupt: its content hashes"
                f" to {actual}; refused"
            )
        self.cache.put(digest, data)
        return data

    def _fetch_manifest(self, repository: str, reference: str, cancel: threading.Event | None) -> bytes:
        url = self._url(repository, "manifests", reference)
        scope = _Scope(repository, _PULL)

        def attempt() -> bytes:
            with self._stream("GET", url, scope, headers={"Accept": MANIFEST_ACCEPT}) as response:
                if response.status_code == 404:
                    raise LayerNotFound(f"no image {repository}:{reference} in {self.location}")
                self._expect(response, 200, f"GET manifest {repository}:{reference}")
                data = b""
                for chunk in response.iter_bytes(CHUNK):
                    data += chunk
                    if len(data) > MAX_MANIFEST_BYTES:
                        raise LayerIntegrityError(
                            f"manifest {repository}:{reference} is larger than {MAX_MANIFEST_BYTES} bytes"
                        )
                return data

        return self._retrying(f"pulling manifest {repository}:{reference}", attempt, cancel)

    # ---- blobs -------------------------------------------------------------------------------

    def _blob(self, repository: str, layer: LayerDescriptor, cancel: threading.Event | None) -> Path:
        """The cached, verified blob of ``layer``: pulled when not cached."""
        cached = self.cache.get(layer.digest)
        if cached is not None:
            return cached
        # A gzip'ed tar is at most a little larger than the tar it holds.
        allowed = self.limits.max_stream_bytes + self.limits.max_stream_bytes // 100 + 1024 * 1024
        if layer.size > allowed:
            raise LayerLimitExceeded(
                f"layer {layer.digest} is {layer.size} bytes: more than a layer within the limits can be"
            )
        return self._download(repository, layer, cancel)

    def _download(self, repository: str, layer: LayerDescriptor, cancel: threading.Event | None) -> Path:
        url = self._url(repository, "blobs", layer.digest)
        scope = _Scope(repository, _PULL)
        where = f"{self.location.host}/{repository}"
        temp = self.cache.temp_file()
        hasher = hashlib.sha256()
        have = 0

        def attempt() -> None:
            nonlocal hasher, have
            if have and have == layer.size:
                return  # all of it arrived before the connection broke
            # identity: the bytes hashed and counted for a resume are the blob's own.
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            with self._stream("GET", url, scope, headers=headers) as response:
                if response.status_code == 404:
                    raise LayerNotFound(f"blob {layer.digest} is not in {where}")
                resumed = (
                    have > 0
                    and response.status_code == 206
                    and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                )
                if not resumed:
                    self._expect(response, 200, f"GET blob {layer.digest} from {repository}")
                    hasher, have = hashlib.sha256(), 0
                with open(temp, "r+b") as out:
                    out.seek(have)
                    out.truncate()
                    for chunk in response.iter_bytes():  # as it arrives: a resume starts after it
                        _check_cancel(cancel)
                        if have + len(chunk) > layer.size:
                            raise LayerIntegrityError(
                                f"blob {layer.digest} from {where} is larger than the {layer.size} bytes"
                                " its manifest gives: refused (nothing unpacked, nothing cached)"
                            )
                        out.write(chunk)
                        hasher.update(chunk)
                        have += len(chunk)

        try:
            self._retrying(f"pulling blob {layer.digest} from {repository}", attempt, cancel)
            actual = "sha256:" + hasher.hexdigest()
            if have != layer.size or actual != layer.digest:
                raise LayerIntegrityError(
                    f"blob {layer.digest} from {where} is corrupt: its {have} bytes hash to {actual}"
                    " (refused: nothing unpacked, nothing cached)"
                )
            return self.cache.commit(temp, layer.digest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def _upload_blob(self, scope: _Scope, data: bytes) -> None:
        digest = digest_of(data)
        head = self._request("HEAD", self._url(scope.repository, "blobs", digest), scope)
        if head.status_code == 200:
            return
        if head.status_code != 404:
            self._expect(head, 200, f"HEAD blob {digest} in {scope.repository}")
        started = self._request(
            "POST", f"{self.location.base_url}/v2/{scope.repository}/blobs/uploads/", scope
        )
        self._expect(started, 202, f"starting an upload to {scope.repository}")
        upload = started.headers.get("Location")
        if not upload:
            raise RegistryError(
                f"{self.location.host} started an upload to {scope.repository} without a Location"
            )
        target = self._origin.join(upload).copy_merge_params({"digest": digest})
        done = self._request(
            "PUT", target, scope, headers={"Content-Type": "application/octet-stream"}, content=data
        )
        self._expect(done, 201, f"uploading blob {digest} to {scope.repository}")

    def _put_manifest(self, scope: _Scope, tag: str, manifest: bytes) -> None:
        response = self._request(
            "PUT",
            self._url(scope.repository, "manifests", tag),
            scope,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
            content=manifest,
        )
        self._expect(response, 201, f"PUT manifest {scope.repository}:{tag}")
        said = response.headers.get("Docker-Content-Digest")
        if said and said != digest_of(manifest):
            raise LayerIntegrityError(
                f"{self.location.host} stored manifest {scope.repository}:{tag} as {said}, not"
                f" {digest_of(manifest)}"
            )

    # ---- HTTP, authentication and retries ----------------------------------------------------

    def _url(self, repository: str, kind: str, reference: str) -> str:
        return f"{self.location.base_url}/v2/{repository}/{kind}/{reference}"

    def _retrying(self, what: str, attempt: Callable[[], T], cancel: threading.Event | None) -> T:
        """``attempt()`` until it succeeds, fails for good, or ``retry_s`` has passed."""
        deadline = time.monotonic() + self.retry_s
        delay = FIRST_DELAY_S
        while True:
            _check_cancel(cancel)
            try:
                return attempt()
            except (*_TRANSIENT, _Transient) as exc:
                reason = _describe(exc)
                if "CERTIFICATE_VERIFY_FAILED" in reason:
                    raise RegistryError(
                        f"{what}: the certificate of {self.location.host} cannot be verified ({reason}); a"
                        f" private CA goes in {CA_FILE_ENV}"
                    ) from None
                if time.monotonic() + delay > deadline:
                    raise RegistryError(
                        f"registry {self.location.host} unavailable: {what} failed for {self.retry_s:g} s"
                        f" (last: {reason})"
                    ) from None
                log.warning(
                    "registry %s: %s failed (%s); retrying in %.1f s", self.location.host, what, reason, delay
                )
                if cancel is not None:
                    if cancel.wait(delay):
                        raise FetchCancelled(f"{what}: cancelled") from None
                else:
                    time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_S)

    @contextlib.contextmanager
    def _stream(
        self, method: str, url: str | httpx.URL, scope: _Scope, *, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        response = self._request(method, url, scope, headers=headers, stream=True)
        try:
            yield response
        finally:
            response.close()

    def _request(
        self,
        method: str,
        url: str | httpx.URL,
        scope: _Scope,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, answering one authentication challenge. ``_Transient`` for 5xx, 408 and 429."""
        target = httpx.URL(url)
        own = _same_origin(target, self._origin)
        response = self._send(method, target, scope, headers, content, stream, authorize=own)
        if response.status_code == 401 and own:
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            self._answer(challenge, scope)
            response = self._send(method, target, scope, headers, content, stream, authorize=True)
            if response.status_code == 401:
                response.close()
                raise RegistryAuthError(self._refused(scope))
        if response.status_code in (408, 429) or response.status_code >= 500:
            status = response.status_code
            detail = _error_detail(response)
            response.close()
            raise _Transient(f"HTTP {status}{detail}")
        return response

    def _send(
        self,
        method: str,
        url: httpx.URL,
        scope: _Scope,
        headers: dict[str, str] | None,
        content: bytes | None,
        stream: bool,
        *,
        authorize: bool,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if authorize:
            credential = self._authorization(scope)
            if credential is not None:
                sent["Authorization"] = credential
        request = self._client.build_request(method, url, headers=sent, content=content)
        return self._client.send(request, stream=stream)

    def _authorization(self, scope: _Scope) -> str | None:
        with self._auth_lock:
            if self._bearer is not None:
                token = self._tokens.get(scope.text)
                if token is None or not token.fresh:
                    token = self._fetch_token(*self._bearer, [scope.text])
                    self._tokens[scope.text] = token
                return f"Bearer {token.value}"
            if self._basic and self._credentials is not None:
                return self._credentials.basic_header()
            return None

    def _answer(self, header: str, scope: _Scope) -> None:
        """Take up the registry's challenge (basic, or a bearer token for ``scope``)."""
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            shown = challenge.scheme if challenge is not None else "none"
            raise RegistryAuthError(
                f"{self.location.host} asks for an authentication Dormant does not speak ({shown})"
            )
        with self._auth_lock:
            if challenge.scheme == "basic":
                if self._credentials is None:
                    raise RegistryAuthError(self._missing(scope))
                self._basic = True
                return
            realm = challenge.params.get("realm", "")
            if not realm:
                raise RegistryAuthError(f"{self.location.host} asks for a bearer token without a realm")
            service = challenge.params.get("service", "")
            scopes = [scope.text]
            asked = challenge.params.get("scope")
            if asked and asked not in scopes:
                scopes.append(asked)
            self._tokens[scope.text] = self._fetch_token(realm, service, scopes)
            self._bearer = (realm, service)

    def _fetch_token(self, realm: str, service: str, scopes: list[str]) -> Token:
        """A token from the token service at ``realm`` (basic auth with the credentials, if any)."""
        url = httpx.URL(realm)
        if url.scheme not in ("https", "http") or not url.host:
            raise RegistryAuthError(f"{self.location.host} names a token service that is no HTTP URL")
        headers: dict[str, str] = {}
        if self._credentials is not None:
            if url.scheme == "http" and not (is_loopback(url.host) or insecure_allowed()):
                raise RegistryAuthError(
                    f"the token service of {self.location.host} is plain HTTP at {url.host}: the credentials"
                    " are not sent in clear (set DORMANT_REGISTRY_INSECURE=1 to allow it)"
                )
            headers["Authorization"] = self._credentials.basic_header()
        params: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        response = self._client.get(url, params=params, headers=headers)
        status = response.status_code
        if status in (401, 403):
            who = (
                f"the credentials ({self._credentials.source})"
                if self._credentials
                else "an anonymous request"
            )
            hint = "" if self._credentials else f": {self._missing_hint()}"
            raise RegistryAuthError(f"the token service at {url.host} refused {who}{hint}")
        if status in (408, 429) or status >= 500:
            raise _Transient(f"token service HTTP {status}")
        if status != 200:
            raise RegistryAuthError(f"the token service at {url.host} answered HTTP {status}")
        try:
            return token_from_response(response.json())
        except ValueError as exc:
            raise RegistryAuthError(f"the token service at {url.host}: {exc}") from None

    def _missing_hint(self) -> str:
        note = f" ({self._credentials_note})" if self._credentials_note else ""
        return (
            "set DORMANT_REGISTRY_USERNAME and DORMANT_REGISTRY_PASSWORD, or log in with docker"
            f" (config.json){note}"
        )

    def _missing(self, scope: _Scope) -> str:
        return f"{self.location.host} wants credentials for {scope.repository}: {self._missing_hint()}"

    def _refused(self, scope: _Scope) -> str:
        if self._credentials is None:
            return self._missing(scope)
        return (
            f"{self.location.host} refused the credentials ({self._credentials.source}) for"
            f" {' and '.join(scope.actions)} on {scope.repository}"
        )

    def _expect(self, response: httpx.Response, status: int, what: str) -> None:
        if response.status_code == status:
            return
        detail = _error_detail(response)
        code = response.status_code
        response.close()
        if code == 403:
            raise RegistryAuthError(f"{what}: {self.location.host} forbids it (HTTP 403){detail}")
        raise RegistryError(f"{what}: {self.location.host} answered HTTP {code}{detail}")


def _same_origin(url: httpx.URL, origin: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise FetchCancelled("cancelled")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300] if not isinstance(exc, _Transient) else text[:300]


def _error_detail(response: httpx.Response) -> str:
    """``: CODE message`` from a distribution-spec error body (read only a little of it)."""
    try:
        if not response.is_stream_consumed:
            body = b""
            for chunk in response.iter_bytes(1024):
                body += chunk
                if len(body) >= _ERROR_BODY_BYTES:
                    break
        else:
            body = response.content[:_ERROR_BODY_BYTES]
        errors = json.loads(body).get("errors")
        first = errors[0] if isinstance(errors, list) and errors else {}
        code, message = first.get("code", ""), first.get("message", "")
        return f": {code} {message}".rstrip() if code or message else ""
    except (ValueError, AttributeError, httpx.HTTPError):
        return ""


def _file_digest(path: Path) -> str | None:
    try:
        hasher = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()
    except FileNotFoundError:
        return None


def _bind(function: Callable[[_Scope, bytes], None], scope: _Scope, data: bytes) -> Callable[[], None]:
    return lambda: function(scope, data)
