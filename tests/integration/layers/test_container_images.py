"""Dormant's container images built without a daemon (``dormant image build``) against a real registry:
the same input gives the same digest, the images pulled back hold a complete tree (the sidecar, the CLI,
every library they import) and say what they provide, and a base image that cannot work is refused.

The base image is made here (no registry outside this machine is reachable): a multi-platform index
like ``python:3.11-slim``'s, docker media types and an attestation entry included, whose layer is a
stand-in for Python. The tree Dormant adds is checked by importing it with this interpreter (the same
CPython 3.11 the image declares) from the extracted layers alone.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dormant_cli import main as cli_main
from dormant_codegen import images
from dormant_codegen.constants import BASE_RUNTIME, PLATFORM_INTERFACE
from dormant_layers.images import (
    BASE_DIGEST_ANNOTATION,
    BASE_NAME_ANNOTATION,
    DOCKER_CONFIG_MEDIA_TYPE,
    DOCKER_LAYER_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    OCI_CONFIG_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    File,
    ImageBuildError,
    ImageRegistry,
    canonical_json,
    tar_layer,
)
from dormant_layers.location import parse_registry_location
from dormant_layers.oci import LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, RegistryAuthError, digest_of
from dormant_local.registry import RegistryServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[3]
BASE_REPOSITORY = "library/python"
HOST_PLATFORM = images.environment_platform()


def _client(registry: RegistryServer) -> ImageRegistry:
    location = parse_registry_location(f"oci+http://127.0.0.1:{registry.port}")
    assert location is not None
    return ImageRegistry(location, retry_s=30)


def _base_manifest(client: ImageRegistry, architecture: str, python: str) -> str:
    layer = tar_layer(
        {
            "usr/local/bin/python3": File(b"#!/bin/sh\n# a stand-in\n", executable=True),
            "etc/os-release": File(f"ID=debian\nARCH={architecture}\n".encode()),
        },
        created_by="base",
    )
    config = canonical_json(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", f"PYTHON_VERSION={python}"],
                "Cmd": ["python3"],
                "Labels": {"org.example.base": "yes"},
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "base"}],
            "container_config": {"Hostname": "builder"},
        }
    )
    client.put_blob(BASE_REPOSITORY, layer.blob)
    client.put_blob(BASE_REPOSITORY, config)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": DOCKER_CONFIG_MEDIA_TYPE,
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [{"mediaType": DOCKER_LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}],
        }
    )
    return client.put_manifest(BASE_REPOSITORY, digest_of(manifest), manifest, DOCKER_MANIFEST_MEDIA_TYPE)


def push_base(
    registry: RegistryServer,
    *,
    tag: str = "3.11-slim",
    python: str = "3.11.7",
    architectures: tuple[str, ...] = (HOST_PLATFORM.architecture, "s390x"),
) -> str:
    """A python:3.11-slim look-alike: an OCI index of one manifest per architecture plus an attestation
    entry; its digest."""
    client = _client(registry)
    entries: list[dict[str, Any]] = []
    for architecture in architectures:
        digest = _base_manifest(client, architecture, python)
        size = len(client.get_manifest(BASE_REPOSITORY, digest)[0])
        platform = {"os": "linux", "architecture": architecture}
        if architecture == "arm64":
            platform["variant"] = "v8"
        entries.append(
            {"mediaType": DOCKER_MANIFEST_MEDIA_TYPE, "digest": digest, "size": size, "platform": platform}
        )
    entries.append(
        {
            **entries[0],
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
    )
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": entries})
    return client.put_manifest(BASE_REPOSITORY, tag, index, OCI_INDEX_MEDIA_TYPE)


def base_ref(registry: RegistryServer, digest: str | None, tag: str = "3.11-slim") -> str:
    return f"oci+http://127.0.0.1:{registry.port}/{BASE_REPOSITORY}:{tag}" + (f"@{digest}" if digest else "")


def _members(blob: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    found: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            found[member.name] = (member, data)
    return found


def _extract(blobs: list[bytes], into: Path) -> None:
    for blob in blobs:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
            tar.extractall(into, filter="fully_trusted")


# What every module of the image's packages imports, from the extracted tree alone (-S: no
# site-packages of this environment): each module's file must come from the tree or the standard library.
_IMPORT_ALL = """
import importlib, os, pkgutil, sys
site = os.environ["PYTHONPATH"]
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if info.name.rpartition(".")[2] != "__main__":
            importlib.import_module(info.name)
stdlib = os.path.dirname(os.__file__)
strays = sorted(
    m.__name__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and not m.__file__.startswith((site, stdlib))
)
print(len(sys.modules), strays)
sys.exit(1 if strays else 0)
"""


def _run_in_tree(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(site.parent)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-S", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _pull_back(
    registry: RegistryServer, repository: str, reference: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of the pushed image, by a client of its own."""
    client = _client(registry)
    data, media_type = client.get_manifest(repository, reference)
    assert media_type == MANIFEST_MEDIA_TYPE
    manifest = json.loads(data)
    config_desc = manifest["config"]
    assert config_desc["mediaType"] == OCI_CONFIG_MEDIA_TYPE
    config = json.loads(
        client.get_blob(repository, config_desc["digest"], config_desc["size"], limit=1 << 20)
    )
    return manifest, config


def _cli_build(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert cli_main(["image", "build", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


async def test_the_pod_image_is_reproducible_complete_and_says_what_it_provides(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_digest = push_base(registry)
    base = base_ref(registry, base_digest)
    target = parse_registry_location(registry.store_url())
    assert target is not None

    first, source = images.build_container("pod", base=base)
    pushed = images.push_container(first, target, ["0.1.0"], base_registry=source)
    second = _cli_build(capsys, "--kind", "pod", "--base", base, "--push", registry.store_url())
    print(f"pod image digest: {first.digest} (API), {second['digest']} (CLI)")
    assert second["digest"] == first.digest == pushed.digest
    assert second["reference"] == f"127.0.0.1:{registry.port}/dormant/pod@{first.digest}"
    assert second["tags"] == ["0.1.0"]

    manifest, config = _pull_back(registry, "dormant/pod", "0.1.0")
    client = _client(registry)
    assert digest_of(client.get_manifest("dormant/pod", "0.1.0")[0]) == first.digest
    chosen = json.loads(client.get_manifest(BASE_REPOSITORY, base_digest)[0])["manifests"][0]["digest"]
    base_manifest = json.loads(client.get_manifest(BASE_REPOSITORY, chosen)[0])
    layers = manifest["layers"]
    assert [x["digest"] for x in layers[:-2]] == [x["digest"] for x in base_manifest["layers"]]
    assert {x["mediaType"] for x in layers} == {LAYER_MEDIA_TYPE}  # the docker base layer, as OCI
    assert manifest["annotations"][BASE_DIGEST_ANNOTATION] == chosen
    assert manifest["annotations"][BASE_NAME_ANNOTATION] == base.removeprefix("oci+http://")

    # The config: the base's, with what the pod needs and what it provides.
    labels = config["config"]["Labels"]
    assert labels["dev.dormant.base-runtime"] == BASE_RUNTIME == "dormant-python:1"
    assert labels["dev.dormant.platform-interface"] == PLATFORM_INTERFACE == "dormant/1"
    assert labels["dev.dormant.python"] == "3.11" and labels["dev.dormant.image.kind"] == "pod"
    assert labels["org.example.base"] == "yes"
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    assert env["PATH"] == "/opt/dormant/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["PYTHONPATH"] == "/opt/dormant/site-packages" and env["LANG"] == "C.UTF-8"
    assert env["DORMANT_WORK_DIR"] == "/var/lib/dormant/work" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["Cmd"] == ["python", "-m", "dormant_sidecar"]
    assert "Entrypoint" not in config["config"]
    assert config["architecture"] == HOST_PLATFORM.architecture and "container_config" not in config
    assert len(config["rootfs"]["diff_ids"]) == len(layers)
    assert config["created"] == "1970-01-01T00:00:00Z"

    # The layers pulled back: a deterministic tree, with the sidecar and its libraries in it.
    blobs = [client.get_blob("dormant/pod", x["digest"], x["size"], limit=1 << 30) for x in layers[-2:]]
    for blob, diff_id in zip(blobs, config["rootfs"]["diff_ids"][-2:], strict=True):
        assert digest_of(gzip.decompress(blob)) == diff_id
        assert blob[4:8] == b"\0\0\0\0" and not blob[3] & 0x08  # gzip: mtime 0, no file name
    third_party, own = _members(blobs[0]), _members(blobs[1])
    assert "opt/dormant/site-packages/dormant_sidecar/__main__.py" in own
    assert "opt/dormant/site-packages/dormant_runtime/__main__.py" in own
    assert "opt/dormant/site-packages/dormant_catalog/migrations/0001_initial.sql" in own
    assert not any(name.startswith("opt/dormant/site-packages/dormant_gateway") for name in own)
    assert "opt/dormant/site-packages/pydantic/__init__.py" in third_party
    assert any(n.startswith("opt/dormant/site-packages/psycopg_binary/") for n in third_party)
    work_dir = own["var/lib/dormant/work"][0]
    assert work_dir.isdir() and (work_dir.uid, work_dir.gid) == (10001, 10001)
    for name, (member, _) in {**third_party, **own}.items():
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
        assert member.mtime == 0 and member.uname == "" and member.mode in (0o644, 0o755), name
        assert (member.uid, member.gid) == ((10001, 10001) if name == "var/lib/dormant/work" else (0, 0))
    listed = third_party["opt/dormant/requirements.txt"][1]
    assert listed is not None and images.parse_requirements_file(listed.decode()) == list(first.pins)
    assert any(pin.startswith("kubernetes==") for pin in first.pins)  # the sidecar's deletion cost

    root = tmp_path / "tree"
    _extract(blobs, root)
    site = root / "opt/dormant/site-packages"
    imported = _run_in_tree(site, "-c", _IMPORT_ALL, *(images.POD.packages or ()))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    helped = _run_in_tree(site, "-m", "dormant_sidecar", "--help")
    assert helped.returncode == 0 and "--platform-interface" in helped.stdout, helped.stderr


async def test_the_control_image_is_reproducible_and_runs_dormant(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = base_ref(registry, push_base(registry))
    first = _cli_build(capsys, "--kind", "control", "--base", base, "--push", registry.store_url())
    second = _cli_build(
        capsys, "--kind", "control", "--base", base, "--push", registry.store_url(), "--tag", "edge"
    )
    print(f"control image digest: {first['digest']}, {second['digest']}")
    assert first["digest"] == second["digest"]
    assert first["repository"] == f"127.0.0.1:{registry.port}/dormant/server"
    pod, _ = images.build_container("pod", base=base)
    assert pod.digest != first["digest"]
    assert pod.image.layers[0].digest != first["layers"][0]  # the pod holds fewer libraries

    manifest, config = _pull_back(registry, "dormant/server", "edge")
    assert digest_of(_client(registry).get_manifest("dormant/server", "edge")[0]) == first["digest"]
    assert config["config"]["Entrypoint"] == ["dormant"] and config["config"]["Cmd"] == ["--help"]
    assert "dev.dormant.base-runtime" not in config["config"]["Labels"]  # it serves no functions
    assert sorted(config["config"]["ExposedPorts"]) == ["8080/tcp", "9464/tcp"]

    client = _client(registry)
    blobs = [
        client.get_blob("dormant/server", x["digest"], x["size"], limit=1 << 30)
        for x in manifest["layers"][-2:]
    ]
    own = _members(blobs[1])
    script = own["opt/dormant/bin/dormant"][0]
    assert script.mode == 0o755
    for package in ("dormant_gateway", "dormant_controller", "dormant_cli", "dormant_codegen"):
        assert f"opt/dormant/site-packages/{package}/__init__.py" in own
    assert any(n.startswith("opt/dormant/site-packages/dormant_gateway/console/static/") for n in own)
    root = tmp_path / "tree"
    _extract(blobs, root)
    site = root / "opt/dormant/site-packages"
    version = _run_in_tree(site, str(root / "opt/dormant/bin/dormant"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == "dormant 0.1.0", version.stderr
    imported = _run_in_tree(
        site, "-c", _IMPORT_ALL, "dormant_gateway", "dormant_controller", "dormant_cli", "dormant_codegen"
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr


def _copy_source(into: Path) -> Path:
    """The parts of the repository an image is built from, elsewhere on disk."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    into.mkdir()
    shutil.copy2(REPO / "pyproject.toml", into / "pyproject.toml")
    (into / "deploy/images").mkdir(parents=True)
    shutil.copy2(REPO / images.CLI_SCRIPT, into / images.CLI_SCRIPT)
    project = images.read_project(REPO)
    for folder in project.packages.values():
        shutil.copytree(folder, into / folder.relative_to(REPO), ignore=ignore)
    return into


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


async def test_the_same_source_elsewhere_gives_the_same_digest_and_a_change_changes_it(
    registry: RegistryServer, tmp_path: Path
) -> None:
    base = base_ref(registry, push_base(registry))
    here, _ = images.build_container("pod", base=base)
    copy = _copy_source(tmp_path / "copy")
    there, _ = images.build_container("pod", base=base, source=copy)
    assert there.digest == here.digest
    _append(copy / "sidecar/dormant_sidecar/pod.py", "# changed\n")
    changed, _ = images.build_container("pod", base=base, source=copy)
    assert changed.digest != here.digest
    assert changed.image.layers[0].digest == here.image.layers[0].digest  # the libraries did not change
    assert changed.image.layers[1].digest != here.image.layers[1].digest
    # A file of a package the pod does not hold changes nothing.
    _append(copy / "gateway/dormant_gateway/__init__.py", "# changed\n")
    assert images.build_container("pod", base=base, source=copy)[0].digest == changed.digest


async def test_a_base_that_cannot_work_is_refused(registry: RegistryServer, tmp_path: Path) -> None:
    other = "arm64" if HOST_PLATFORM.architecture != "arm64" else "amd64"
    elsewhere = push_base(registry, tag="other-arch", architectures=(other,))
    with pytest.raises(ImageBuildError, match=f"has no {HOST_PLATFORM} image .*it has: linux/{other}"):
        images.build_container("pod", base=base_ref(registry, elsewhere, "other-arch"))
    newer = push_base(registry, tag="3.12-slim", python="3.12.1")
    with pytest.raises(ImageBuildError, match=r"base image has Python 3\.12\.1, this environment 3\.11"):
        images.build_container("pod", base=base_ref(registry, newer, "3.12-slim"))
    # By tag only: it builds, and says the build cannot be repeated for sure.
    push_base(registry)
    by_tag, _ = images.build_container("pod", base=base_ref(registry, None))
    assert any("name it by digest" in note for note in by_tag.notes)
    with pytest.raises(ImageBuildError, match="is not a Dormant repository"):
        images.build_container("pod", base=base_ref(registry, None), source=tmp_path)


async def test_a_requirements_file_pins_the_environment(registry: RegistryServer, tmp_path: Path) -> None:
    base = base_ref(registry, push_base(registry))
    pins = images.list_pins(images.read_project(REPO), images.POD)
    exact = tmp_path / "exact.txt"
    exact.write_text(images.requirements_text(images.POD, pins))
    built, _ = images.build_container("pod", base=base, requirements_file=exact)
    assert list(built.pins) == pins
    name, _, version = pins[0].partition("==")
    drifted = tmp_path / "drifted.txt"
    drifted.write_text("\n".join([f"{name}==0.0.1", *pins[1:], "left-over==1.0"]) + "\n")
    with pytest.raises(ImageBuildError) as caught:
        images.build_container("pod", base=base, requirements_file=drifted)
    message = str(caught.value)
    assert f"{name}: requirements file 0.0.1, this environment {version}" in message
    assert "left-over: in the requirements file, not needed" in message


async def test_push_credentials_never_go_to_another_registrys_base(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DORMANT_REGISTRY_USERNAME", "builder")
    monkeypatch.setenv("DORMANT_REGISTRY_PASSWORD", "push-secret")
    other = RegistryServer(tmp_path / "base-registry", htpasswd={"builder": "push-secret"})
    await other.start()
    try:
        base = base_ref(other, push_base(other))  # pushed with the variables' credentials
        target = parse_registry_location(registry.store_url())
        # Built to push elsewhere: the variables are not sent to the base's registry.
        with pytest.raises(RegistryAuthError) as refused:
            images.build_container("pod", base=base, push_to=target)
        assert "go only to the registry pushed to" in str(refused.value)
        assert "push-secret" not in str(refused.value)
        # Its own credentials, from docker's config.json, are.
        config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            json.dumps({"auths": {f"127.0.0.1:{other.port}": {"auth": "YnVpbGRlcjpwdXNoLXNlY3JldA=="}}})
        )
        built, _ = images.build_container("pod", base=base, push_to=target)
        # Pushed to the base's own registry, the variables are the credentials.
        config.unlink()
        same, _ = images.build_container("pod", base=base, push_to=parse_registry_location(other.store_url()))
        assert same.digest == built.digest
    finally:
        await other.stop()
