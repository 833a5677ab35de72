"""Container images by the OCI image spec, built without a daemon: crane's ``append`` and ``mutate``.

An image here is a base image pulled from a registry (``pull_base``: a manifest, or an index from which
the manifest of one platform is chosen), plus layers written by ``tar_layer``, plus a config derived
from the base's (``assemble``: the same environment, with the changes of a ``ConfigChange``), pushed
with the registry store's client (``ImageRegistry``, a ``RegistryStore`` that also speaks manifests of
other media types and arbitrary blobs).

Same input, same digest: ``tar_layer`` sorts its entries and fixes every mtime (0), owner (0:0 unless
an entry says otherwise), owner name (empty) and mode (0644 for files, 0755 for executables and
directories), and gzips with mtime 0 and no file name; configs and manifests are canonical JSON with
``created`` at the epoch. The compressed bytes also depend on zlib's version: the uncompressed digests
(``diff_ids``) do not.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .auth import PASSWORD_ENV, USERNAME_ENV, Credentials, _from_entry, _host_key, docker_config_path
from .location import RegistryLocation, parse_registry_location
from .oci import (
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    LayerIntegrityError,
    LayerNotFound,
    LayerStoreError,
    check_digest,
    digest_of,
)
from .registry import _PULL, _PUSH, RegistryStore, _bind, _Scope

OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
OCI_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_ZSTD_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
BASE_NAME_ANNOTATION = "org.opencontainers.image.base.name"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"
EPOCH = "1970-01-01T00:00:00Z"
"""``created`` of every config and history entry written here: a build time would change the digest."""
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_BASE_LAYER_BYTES = 2 * 1024 * 1024 * 1024
"""A base image layer copied to the target registry is held in memory: no base layer is larger."""

IMAGE_ACCEPT = ", ".join(
    (MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
)
_INDEX_TYPES = (OCI_INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
_MANIFEST_TYPES = (MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE)
# Base layers are copied as they are; a docker gzip layer is the same bytes as an OCI gzip layer.
_LAYER_TYPES = {
    LAYER_MEDIA_TYPE: LAYER_MEDIA_TYPE,
    DOCKER_LAYER_MEDIA_TYPE: LAYER_MEDIA_TYPE,
    OCI_ZSTD_LAYER_MEDIA_TYPE: OCI_ZSTD_LAYER_MEDIA_TYPE,
}
_CONFIG_KEYS = ("architecture", "os", "os.version", "os.features", "variant", "author", "config")
"""What a derived config keeps of its base's, besides ``rootfs`` and ``history`` (docker's
``container_config`` and friends describe the base's own build and are dropped)."""
_REFERENCE_RE = re.compile(
    r"^(?P<scheme>oci(?:\+https?)?)://(?P<host>[^/@\s]+)/(?P<path>[^@\s]+?)"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$",
    re.ASCII,
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", re.ASCII)


class ImageBuildError(LayerStoreError):
    """A container image cannot be built as asked (a base without the platform, a malformed base)."""


# ---- references -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageReference:
    """``oci[+http]://host[:port]/repository[:tag][@sha256:…]``: one image in one registry."""

    location: RegistryLocation
    """The registry (its ``prefix`` is empty: the repository is the whole path)."""
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What the manifest is asked for by: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """``host/repository[:tag][@digest]``, the form image tools show (no scheme)."""
        text = f"{self.location.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        scheme = "oci" if self.location.scheme == "https" else "oci+http"
        return f"{scheme}://{self.name}"


def parse_image_reference(text: str) -> ImageReference:
    """Parse ``oci://host/repo[:tag][@digest]`` (``oci+http://`` for a registry without TLS, on this
    machine or with ``DORMANT_REGISTRY_INSECURE``); ``ValueError`` for anything else."""
    match = _REFERENCE_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f"invalid image reference {text!r}: expected oci://host[:port]/repository[:tag][@sha256:<hex>]"
        )
    path, tag = match["path"], None
    head, sep, last = path.rpartition("/")
    if ":" in last:
        last, _, tag = last.partition(":")
        if not _TAG_RE.match(tag):
            raise ValueError(f"invalid image reference {text!r}: {tag!r} is not a valid tag")
        path = f"{head}{sep}{last}"
    location = parse_registry_location(f"{match['scheme']}://{match['host']}/{path}")
    if location is None or not location.prefix:  # pragma: no cover - the pattern guarantees both
        raise ValueError(f"invalid image reference {text!r}")
    return ImageReference(
        RegistryLocation(location.scheme, location.host), location.prefix, tag, match["digest"]
    )


def repository_reference(location: RegistryLocation, leaf: str, tag: str | None = None) -> ImageReference:
    """The image ``leaf`` under a store location's prefix: ``oci://host/prefix`` + ``pod`` →
    ``host/prefix/pod``."""
    repository = f"{location.prefix}/{leaf}" if location.prefix else leaf
    return ImageReference(RegistryLocation(location.scheme, location.host), repository, tag)


# ---- deterministic layers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class File:
    """A regular file of a layer; ``executable`` gives it mode 0755 instead of 0644."""

    data: bytes
    executable: bool = False


@dataclass(frozen=True, slots=True)
class Directory:
    """A directory of a layer, owned by ``uid``:``gid`` (0:0 unless it must be writable by a user)."""

    uid: int = 0
    gid: int = 0


Entry = File | Directory


@dataclass(frozen=True, slots=True)
class Layer:
    """One gzip tar layer: its blob, the blob's digest and the digest of the tar inside (``diff_id``)."""

    blob: bytes = field(repr=False)
    digest: str
    diff_id: str
    created_by: str
    """Its history entry: what made it."""

    @property
    def size(self) -> int:
        return len(self.blob)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": LAYER_MEDIA_TYPE, "digest": self.digest, "size": self.size}


def _tar_info(name: str, entry: Entry, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uname = info.gname = ""
    if isinstance(entry, Directory):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.uid, info.gid = entry.uid, entry.gid
    else:
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if entry.executable else 0o644
        info.uid = info.gid = 0
        info.size = size
    return info


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in path:
        raise ValueError(f"layer path {path!r} must be relative, normalized and POSIX")
    return path


def tar_layer(entries: Mapping[str, Entry], *, created_by: str, compresslevel: int = 6) -> Layer:
    """The deterministic gzip tar of ``entries`` (POSIX path relative to ``/`` → entry), every parent
    directory added (0:0, 0755) unless given."""
    tree: dict[str, Entry] = {}
    for path in entries:
        parts = _check_path(path).split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if isinstance(entries.get(parent), File):
                raise ValueError(f"layer path {parent!r} is both a file and a directory")
            tree.setdefault(parent, Directory())
    tree.update(entries)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(tree):
            entry = tree[name]
            if isinstance(entry, Directory):
                tar.addfile(_tar_info(name, entry))
            else:
                tar.addfile(_tar_info(name, entry, len(entry.data)), io.BytesIO(entry.data))
    uncompressed = raw.getvalue()
    # gzip.compress writes mtime 0 as asked and never a file name.
    blob = gzip.compress(uncompressed, compresslevel=compresslevel, mtime=0)
    return Layer(blob, digest_of(blob), digest_of(uncompressed), created_by)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---- the registry client ---------------------------------------------------------------------


class ImageRegistry(RegistryStore):
    """The registry store's client (retries, basic and bearer authentication, error messages), for whole
    container images: manifests and indexes of any media type, and blobs by digest, both ways.

    ``env_credentials=False`` (a base image's registry that is not the one pushed to): the credentials of
    ``DORMANT_REGISTRY_USERNAME``/``_PASSWORD`` are not sent to it, only those docker's ``config.json``
    has for its host, or none (anonymous pulls)."""

    def __init__(self, location: RegistryLocation, *, env_credentials: bool = True, **options: Any) -> None:
        super().__init__(location, **options)
        env_set = bool(os.environ.get(USERNAME_ENV) or os.environ.get(PASSWORD_ENV))
        if env_set and not env_credentials:
            self._credentials = _docker_config_credentials(location.host)
            self._credentials_note = (
                f"{USERNAME_ENV}/{PASSWORD_ENV} go only to the registry pushed to: give this one's"
                f" credentials in docker's {docker_config_path()}"
            )

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest or index ``reference`` (a tag or a digest) and its media type; a digest is
        verified against the bytes."""
        url = self._url(repository, "manifests", reference)
        scope = _Scope(repository, _PULL)

        def attempt() -> tuple[bytes, str]:
            with self._stream("GET", url, scope, headers={"Accept": IMAGE_ACCEPT}) as response:
                if response.status_code == 404:
                    raise LayerNotFound(f"no image {self.location.host}/{repository}:{reference}")
                self._expect(response, 200, f"GET manifest {repository}:{reference}")
                data = b""
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_MANIFEST_BYTES:
                        raise LayerIntegrityError(f"manifest {repository}:{reference} is too large")
                header = response.headers.get("Content-Type", "").partition(";")[0].strip()
                return data, header

        data, header = self._retrying(f"pulling manifest {repository}:{reference}", attempt, None)
        if reference.startswith("sha256:") and digest_of(data) != reference:
            raise LayerIntegrityError(
                f"manifest {repository}@{reference} from {self.location.host} does not hash to its digest"
            )
        try:
            body = json.loads(data)
        except ValueError:
            raise LayerIntegrityError(f"manifest {repository}:{reference} is not JSON") from None
        declared = body.get("mediaType") if isinstance(body, dict) else None
        return data, declared if isinstance(declared, str) and declared else header

    def get_blob(self, repository: str, digest: str, size: int, *, limit: int) -> bytes:
        """The blob ``digest`` of ``size`` bytes (at most ``limit``), verified, in memory."""
        check_digest(digest)
        if size > limit:
            raise ImageBuildError(f"blob {digest} of {repository} is {size} bytes: more than {limit}")
        url = self._url(repository, "blobs", digest)
        scope = _Scope(repository, _PULL)

        def attempt() -> bytes:
            with self._stream("GET", url, scope, headers={"Accept-Encoding": "identity"}) as response:
                if response.status_code == 404:
                    raise LayerNotFound(f"blob {digest} is not in {self.location.host}/{repository}")
                self._expect(response, 200, f"GET blob {digest} from {repository}")
                out = io.BytesIO()
                for chunk in response.iter_bytes():
                    if out.tell() + len(chunk) > size:
                        raise LayerIntegrityError(f"blob {digest} is larger than its {size} bytes")
                    out.write(chunk)
                return out.getvalue()

        data = self._retrying(f"pulling blob {digest} from {repository}", attempt, None)
        if len(data) != size or digest_of(data) != digest:
            raise LayerIntegrityError(
                f"blob {digest} from {self.location.host}/{repository} is corrupt: refused"
            )
        return data

    def has_blob(self, repository: str, digest: str) -> bool:
        scope = _Scope(repository, _PUSH)

        def attempt() -> bool:
            response = self._request("HEAD", self._url(repository, "blobs", digest), scope)
            response.close()
            if response.status_code in (200, 404):
                return response.status_code == 200
            self._expect(response, 200, f"HEAD blob {digest} in {repository}")
            return False  # pragma: no cover - _expect raised

        return self._retrying(f"looking for blob {digest} in {repository}", attempt, None)

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` (unless the repository has it); its digest."""
        scope = _Scope(repository, _PUSH)
        self._retrying(f"pushing a blob to {repository}", _bind(self._upload_blob, scope, data), None)
        return digest_of(data)

    def put_manifest(self, repository: str, reference: str, manifest: bytes, media_type: str) -> str:
        """Store ``manifest`` (of ``media_type``) under ``reference`` (a tag or its digest); its digest."""
        scope = _Scope(repository, _PUSH)
        digest = digest_of(manifest)

        def attempt() -> None:
            response = self._request(
                "PUT",
                self._url(repository, "manifests", reference),
                scope,
                headers={"Content-Type": media_type},
                content=manifest,
            )
            self._expect(response, 201, f"PUT manifest {repository}:{reference}")
            said = response.headers.get("Docker-Content-Digest")
            response.close()
            if said and said != digest:
                raise LayerIntegrityError(
                    f"{self.location.host} stored manifest {repository}:{reference} as {said}, not {digest}"
                )

        self._retrying(f"pushing manifest {repository}:{reference}", attempt, None)
        return digest


def _docker_config_credentials(host: str) -> Credentials | None:
    """The ``auths`` entry docker's ``config.json`` has for ``host`` (no credential helpers), or None."""
    path = docker_config_path()
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read docker's {path}: {type(exc).__name__}") from None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return None
    entry = next((v for k, v in auths.items() if _host_key(str(k)) == _host_key(host)), None)
    return _from_entry(entry, str(path)) if isinstance(entry, dict) else None


# ---- the base image --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if entry.get("os") != self.os or entry.get("architecture") != self.architecture:
            return False
        return self.variant is None or entry.get("variant") in (None, self.variant)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The manifest of one platform of a base image, its config and its layers."""

    reference: ImageReference
    manifest_digest: str
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]

    @property
    def env(self) -> dict[str, str]:
        """The base's environment (``config.Env``) as a mapping."""
        found: dict[str, str] = {}
        for item in (self.config.get("config") or {}).get("Env") or []:
            key, _, value = str(item).partition("=")
            found[key] = value
        return found


def _descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ImageBuildError(f"{what} is not a descriptor")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageBuildError(f"{what} has no valid size")
    try:
        digest = check_digest(str(raw.get("digest")))
    except LayerIntegrityError as exc:
        raise ImageBuildError(f"{what}: {exc}") from None
    return Descriptor(str(raw.get("mediaType", "")), digest, size)


def pull_base(registry: ImageRegistry, ref: ImageReference, platform: Platform) -> BaseImage:
    """Read the base image ``ref`` for ``platform``: an index is resolved to that platform's manifest,
    then the manifest and its config are read (each verified against its digest)."""
    data, media_type = registry.get_manifest(ref.repository, ref.reference)
    if ref.digest is None and ref.tag is None:  # pragma: no cover - parse gives one or the other
        raise ImageBuildError(f"{ref}: name a tag or a digest")
    if media_type in _INDEX_TYPES:
        index = json.loads(data)
        entries = index.get("manifests") if isinstance(index, dict) else None
        chosen = [
            m
            for m in entries or []
            if isinstance(m, dict) and isinstance(m.get("platform"), dict) and platform.matches(m["platform"])
        ]
        if not chosen:
            offered = sorted(
                str(Platform(str(p.get("os")), str(p.get("architecture")), p.get("variant")))
                for m in entries or []
                if isinstance(m, dict)
                and isinstance(p := m.get("platform"), dict)
                and p.get("os") != "unknown"
            )
            raise ImageBuildError(
                f"base image {ref.name} has no {platform} image (it has: {', '.join(offered) or 'none'})"
            )
        wanted = _descriptor(chosen[0], f"{ref.name}'s {platform} entry")
        data, media_type = registry.get_manifest(ref.repository, wanted.digest)
    if media_type not in _MANIFEST_TYPES:
        raise ImageBuildError(f"base image {ref.name} is a {media_type or 'manifest of no media type'}")
    manifest_digest = digest_of(data)
    manifest = json.loads(data)
    config_desc = _descriptor(manifest.get("config"), f"{ref.name}'s config")
    if config_desc.media_type not in (OCI_CONFIG_MEDIA_TYPE, DOCKER_CONFIG_MEDIA_TYPE):
        raise ImageBuildError(f"base image {ref.name} has a config of type {config_desc.media_type}")
    config = json.loads(
        registry.get_blob(ref.repository, config_desc.digest, config_desc.size, limit=MAX_CONFIG_BYTES)
    )
    if not isinstance(config, dict):
        raise ImageBuildError(f"base image {ref.name}'s config is not a JSON object")
    if config.get("os") != platform.os or config.get("architecture") != platform.architecture:
        raise ImageBuildError(
            f"base image {ref.name} is {config.get('os')}/{config.get('architecture')}, not {platform}"
        )
    layers = tuple(
        _descriptor(raw, f"{ref.name}'s layer {n}") for n, raw in enumerate(manifest.get("layers") or [])
    )
    for layer in layers:
        if layer.media_type not in _LAYER_TYPES:
            raise ImageBuildError(
                f"base image {ref.name} has a layer of type {layer.media_type}: only gzip and zstd tar"
                " layers that may be copied are supported"
            )
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise ImageBuildError(
            f"base image {ref.name}: its config lists {len(diff_ids or [])} layers,"
            f" its manifest {len(layers)}"
        )
    return BaseImage(ref, manifest_digest, config, layers)


# ---- the derived image -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What an image changes in its base's runtime config (``None``: keep the base's)."""

    env: Mapping[str, str] = field(default_factory=dict)
    """Variables set (replacing the base's value)."""
    path_prefix: Sequence[str] = ()
    """Folders put in front of the base's ``PATH``."""
    user: str | None = None
    working_dir: str | None = None
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    exposed_ports: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """A complete image: ``base`` + ``layers``, with its config and manifest bytes."""

    base: BaseImage
    layers: tuple[Layer, ...]
    config: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def assemble(
    base: BaseImage,
    layers: Sequence[Layer],
    change: ConfigChange,
    *,
    annotations: Mapping[str, str] | None = None,
    base_name: str | None = None,
) -> ContainerImage:
    """The config and manifest of ``layers`` on top of ``base``; the manifest records the base
    (``org.opencontainers.image.base.name`` = ``base_name`` or the base's reference, and its digest)."""
    config: dict[str, Any] = {k: base.config[k] for k in _CONFIG_KEYS if k in base.config}
    runtime: dict[str, Any] = dict(config.get("config") or {})
    env = base.env
    path = env.get("PATH", DEFAULT_PATH)
    if change.path_prefix:
        path = ":".join([*change.path_prefix, path])
    env["PATH"] = path
    env.update(change.env)
    runtime["Env"] = [f"{key}={value}" for key, value in env.items()]
    if change.user is not None:
        runtime["User"] = change.user
    if change.working_dir is not None:
        runtime["WorkingDir"] = change.working_dir
    if change.entrypoint is not None:
        runtime["Entrypoint"] = list(change.entrypoint) or None
    if change.cmd is not None:
        runtime["Cmd"] = list(change.cmd) or None
    if change.exposed_ports:
        ports = dict(runtime.get("ExposedPorts") or {})
        ports.update({port: {} for port in change.exposed_ports})
        runtime["ExposedPorts"] = ports
    labels = dict(runtime.get("Labels") or {})
    labels.update(change.labels)
    runtime["Labels"] = labels
    config["config"] = {k: v for k, v in runtime.items() if v is not None}
    base_diff_ids = list((base.config.get("rootfs") or {}).get("diff_ids") or [])
    config["rootfs"] = {"type": "layers", "diff_ids": [*base_diff_ids, *(x.diff_id for x in layers)]}
    history = [h for h in base.config.get("history") or [] if isinstance(h, dict)]
    history += [{"created": EPOCH, "created_by": layer.created_by} for layer in layers]
    config["history"] = history
    config["created"] = EPOCH
    config_bytes = canonical_json(config)
    notes = {
        BASE_NAME_ANNOTATION: base_name or base.reference.name,
        BASE_DIGEST_ANNOTATION: base.manifest_digest,
        **(annotations or {}),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": OCI_CONFIG_MEDIA_TYPE,
            "digest": digest_of(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            *(Descriptor(_LAYER_TYPES[d.media_type], d.digest, d.size).as_dict() for d in base.layers),
            *(layer.descriptor() for layer in layers),
        ],
        "annotations": dict(sorted(notes.items())),
    }
    return ContainerImage(base, tuple(layers), config_bytes, canonical_json(manifest))


def push_image(
    image: ContainerImage,
    target: ImageRegistry,
    repository: str,
    tags: Sequence[str],
    *,
    source: ImageRegistry,
) -> str:
    """Push ``image`` to ``repository`` of ``target`` under each of ``tags``: the base's layers are copied
    from ``source`` (the base's registry) when the target lacks them. Its manifest digest."""
    for layer in image.base.layers:
        if not target.has_blob(repository, layer.digest):
            data = source.get_blob(
                image.base.reference.repository, layer.digest, layer.size, limit=MAX_BASE_LAYER_BYTES
            )
            target.put_blob(repository, data)
    for own in image.layers:
        target.put_blob(repository, own.blob)
    target.put_blob(repository, image.config)
    for tag in tags or (image.digest,):
        target.put_manifest(repository, tag, image.manifest, MANIFEST_MEDIA_TYPE)
    return image.digest
