"""The pieces of Dormant's container images that need no registry: deterministic layers, image references,
a config derived from a base's, the libraries taken from an installed environment, and the agreement of
the daemonless build with the Dockerfiles, the sidecar's defaults and the Helm chart."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib
import inspect
import io
import json
import os
import shlex
import tarfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dormant_catalog.versions import DEFAULT_PLATFORM_INTERFACE
from dormant_codegen import images
from dormant_codegen.constants import BASE_RUNTIME, PLATFORM_INTERFACE
from dormant_layers.images import (
    DOCKER_LAYER_MEDIA_TYPE,
    BaseImage,
    ConfigChange,
    Descriptor,
    Directory,
    File,
    ImageBuildError,
    assemble,
    parse_image_reference,
    tar_layer,
)
from dormant_layers.oci import LAYER_MEDIA_TYPE, digest_of
from dormant_sidecar.pod import Pod

REPO = Path(__file__).resolve().parents[2]
PROJECT = images.read_project(REPO)


# ---- layers ------------------------------------------------------------------------------------


def test_a_layer_is_the_same_bytes_whatever_the_order_and_normalized() -> None:
    files = {"opt/a/z.py": File(b"z"), "opt/a/bin/run": File(b"#!/bin/sh\n", executable=True)}
    one = tar_layer(files, created_by="x")
    other = tar_layer(dict(reversed(list(files.items()))), created_by="x")
    assert one.blob == other.blob and one.digest == digest_of(one.blob)
    raw = gzip.decompress(one.blob)
    assert one.diff_id == digest_of(raw)
    assert one.blob[4:8] == b"\0\0\0\0" and not one.blob[3] & 0x08  # gzip mtime 0, no FNAME
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["opt", "opt/a", "opt/a/bin", "opt/a/bin/run", "opt/a/z.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, 0, "", "")}
    assert members["opt/a/bin/run"].mode == 0o755 and members["opt/a/z.py"].mode == 0o644
    assert members["opt/a"].isdir() and members["opt/a"].mode == 0o755
    owned = tar_layer({"var/work": Directory(10001, 10001)}, created_by="x")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(owned.blob))) as tar:
        assert (tar.getmember("var/work").uid, tar.getmember("var").uid) == (10001, 0)
    assert (
        tar_layer({"opt/a/z.py": File(b"y")}, created_by="x").digest
        != tar_layer({"opt/a/z.py": File(b"z")}, created_by="x").digest
    )


@pytest.mark.parametrize("path", ["/abs", "a/../b", "a//b", "./a", "a\\b", ""])
def test_a_layer_refuses_paths_that_are_not_plain(path: str) -> None:
    with pytest.raises(ValueError, match="relative, normalized and POSIX"):
        tar_layer({path: File(b"")}, created_by="x")


def test_a_layer_refuses_a_file_that_is_also_a_directory() -> None:
    with pytest.raises(ValueError, match="both a file and a directory"):
        tar_layer({"a": File(b""), "a/b": File(b"")}, created_by="x")


# ---- references --------------------------------------------------------------------------------


def test_image_references() -> None:
    digest = "sha256:" + "ab" * 32
    ref = parse_image_reference(f"oci://registry-1.docker.io/library/python:3.11-slim@{digest}")
    assert (ref.location.host, ref.repository, ref.tag, ref.digest) == (
        "registry-1.docker.io",
        "library/python",
        "3.11-slim",
        digest,
    )
    assert ref.reference == digest and ref.name == f"registry-1.docker.io/library/python:3.11-slim@{digest}"
    local = parse_image_reference("oci+http://127.0.0.1:5000/mirror/python")
    assert (local.location.scheme, local.location.host, local.repository, local.tag) == (
        "http",
        "127.0.0.1:5000",
        "mirror/python",
        None,
    )
    assert str(local) == "oci+http://127.0.0.1:5000/mirror/python"
    with pytest.raises(ValueError, match="plain HTTP"):
        parse_image_reference("oci+http://registry.example.com/python:3.11")
    for bad in (
        "python:3.11-slim",
        "oci://host",
        "oci://host/Python",
        "oci://host/py:bad tag",
        "oci://h/p@md5:1",
    ):
        with pytest.raises(ValueError):
            parse_image_reference(bad)


# ---- the config on top of a base ---------------------------------------------------------------


def _base() -> BaseImage:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "Cmd": ["python3"], "Labels": {"a": "1"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
        "history": [{"created_by": "base"}],
        "container_config": {"Hostname": "x"},
        "docker_version": "20",
        "created": "2024-05-01T00:00:00Z",
    }
    layer = Descriptor(DOCKER_LAYER_MEDIA_TYPE, "sha256:" + "2" * 64, 10)
    ref = parse_image_reference("oci://mirror.example.com/library/python:3.11-slim")
    return BaseImage(ref, "sha256:" + "3" * 64, config, (layer,))


def test_the_config_is_the_bases_with_the_changes() -> None:
    layer = tar_layer({"opt/x": File(b"x")}, created_by="mine")
    change = ConfigChange(
        env={"LANG": "C", "HOME": "/tmp"},
        path_prefix=("/opt/bin",),
        user="10001:10001",
        entrypoint=(),
        cmd=("python", "-m", "x"),
        exposed_ports=("9464/tcp",),
        labels={"b": "2"},
    )
    image = assemble(_base(), [layer], change, annotations={"note": "n"})
    config = json.loads(image.config)
    assert config["config"] == {
        "Env": ["PATH=/opt/bin:/usr/bin:/bin", "LANG=C", "HOME=/tmp"],
        "Cmd": ["python", "-m", "x"],
        "User": "10001:10001",
        "ExposedPorts": {"9464/tcp": {}},
        "Labels": {"a": "1", "b": "2"},
    }
    assert "container_config" not in config and "docker_version" not in config
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, layer.diff_id]
    assert config["history"][-1] == {"created": "1970-01-01T00:00:00Z", "created_by": "mine"}
    manifest = json.loads(image.manifest)
    assert [x["mediaType"] for x in manifest["layers"]] == [LAYER_MEDIA_TYPE, LAYER_MEDIA_TYPE]
    assert manifest["config"]["digest"] == digest_of(image.config)
    assert manifest["annotations"] == {
        "note": "n",
        "org.opencontainers.image.base.digest": "sha256:" + "3" * 64,
        "org.opencontainers.image.base.name": "mirror.example.com/library/python:3.11-slim",
    }
    assert assemble(_base(), [layer], change, annotations={"note": "n"}).manifest == image.manifest
    renamed = assemble(_base(), [layer], change, base_name="docker.io/library/python:3.11-slim")
    assert json.loads(renamed.manifest)["annotations"]["org.opencontainers.image.base.name"] == (
        "docker.io/library/python:3.11-slim"
    )


# ---- libraries from the environment ---------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _fake_distribution(site: Path, *, pth: bool = False) -> dict[str, bytes]:
    files = {
        "fakedist/__init__.py": b"VALUE = 1\n",
        "fakedist/__pycache__/__init__.cpython-311.pyc": b"\0",
        "fakedist-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: fakedist\nVersion: 1.0\n",
        "fakedist-1.0.dist-info/INSTALLER": b"pip\n",
        "fakedist-1.0.dist-info/REQUESTED": b"",
        "../../../bin/fakedist": b"#!/usr/bin/python\n",
    }
    if pth:
        files["fakedist.pth"] = b"import fakedist\n"
    lines = []
    for rel, data in files.items():
        path = (site / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        lines.append(f"{rel},{_record_hash(data)},{len(data)}")
    record = "\n".join([*lines, "fakedist-1.0.dist-info/RECORD,,"]) + "\n"
    (site / "fakedist-1.0.dist-info/RECORD").write_text(record)
    return files


def test_a_distribution_is_taken_as_its_record_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "lib/python3.11/site-packages"
    files = _fake_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    dist = images.installed_distribution("fakedist==1.0")
    assert sorted(dist.files) == [
        "fakedist-1.0.dist-info/METADATA",
        "fakedist-1.0.dist-info/RECORD",
        "fakedist/__init__.py",
    ]
    record = dist.files["fakedist-1.0.dist-info/RECORD"].decode()
    metadata_file, module = files["fakedist-1.0.dist-info/METADATA"], files["fakedist/__init__.py"]
    assert record.splitlines() == [
        f"fakedist-1.0.dist-info/METADATA,{_record_hash(metadata_file)},{len(metadata_file)}",
        f"fakedist/__init__.py,{_record_hash(module)},{len(module)}",
        "fakedist-1.0.dist-info/RECORD,,",
    ]
    (site / "fakedist/__init__.py").write_bytes(b"VALUE = 2\n")
    with pytest.raises(ImageBuildError, match="was changed after it was installed"):
        images.installed_distribution("fakedist==1.0")
    with pytest.raises(ImageBuildError, match="changed while the image was built"):
        images.installed_distribution("fakedist==2.0")


def test_a_distribution_with_a_pth_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "lib/python3.11/site-packages"
    _fake_distribution(site, pth=True)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    with pytest.raises(ImageBuildError, match=r"\.pth files are not read from PYTHONPATH"):
        images.installed_distribution("fakedist==1.0")


def test_requirements_are_resolved_in_this_environment() -> None:
    pins = images.resolve_environment([Requirement("psycopg[binary]>=3")])
    names = {pin.partition("==")[0] for pin in pins}
    assert {"psycopg", "psycopg-binary", "typing-extensions"} <= names  # the extra's and the marker's
    assert "psycopg-pool" not in names  # an extra nobody asked for
    with pytest.raises(ImageBuildError, match="is not installed in this environment"):
        images.resolve_environment([Requirement("no-such-distribution-here")])
    with pytest.raises(ImageBuildError, match="which does not satisfy pydantic<1"):
        images.resolve_environment([Requirement("pydantic<1")])
    assert images.resolve_environment([Requirement("pywin32; sys_platform == 'win32'")]) == []


def test_a_requirements_file_is_name_equals_version() -> None:
    assert images.parse_requirements_file("# x\nPyYAML==6.0.1  # why\n\nattrs==23.1\n") == [
        "attrs==23.1",
        "pyyaml==6.0.1",
    ]
    for bad in ("pydantic>=2\n", "==1.0\n", "x==not a version\n"):
        with pytest.raises(ImageBuildError, match="line 1"):
            images.parse_requirements_file(bad)


# ---- the Dockerfiles say what the daemonless build does ---------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    logical, found = "", []
    for line in path.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        logical += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = logical.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
            logical = ""
    return found


def _pairs(text: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(text))


@pytest.mark.parametrize("kind", [images.POD, images.CONTROL], ids=lambda k: k.name)
def test_the_dockerfile_builds_the_same_tree_and_config(kind: images.ImageKind) -> None:
    dockerfile = REPO / f"deploy/images/{kind.name}.Dockerfile"
    steps = _instructions(dockerfile)
    args = {k: v for word, rest in steps if word == "ARG" for k, v in _pairs(rest).items()}
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert ("FROM", "${PYTHON_IMAGE}") in steps
    copies: dict[str, str] = {}
    for word, rest in steps:
        if word == "COPY":
            *flags_and_sources, dest = [t for t in shlex.split(rest) if not t.startswith("--")]
            (source,) = flags_and_sources
            assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which does not exist"
            copies[dest] = source
    site = f"/{images.SITE_PACKAGES}/"
    packages = {dest.removeprefix(site): src for dest, src in copies.items() if dest.startswith(site)}
    assert sorted(packages) == images.kind_packages(PROJECT, kind)
    for package, source in packages.items():
        assert REPO / source == PROJECT.packages[package]
    requirements = copies[f"/{images.REQUIREMENTS_FILE}"]
    assert requirements == f"deploy/images/requirements-{kind.name}.txt"
    env: dict[str, str] = {}
    for word, rest in steps:
        if word == "ENV":
            env.update(_pairs(rest))
    change = images.config_change(kind, PROJECT)
    assert env.pop("PATH") == ":".join([*change.path_prefix, "$PATH"])
    assert env == dict(change.env)
    labels = {k: v for word, rest in steps if word == "LABEL" for k, v in _pairs(rest).items()}
    assert labels.pop(images.LABEL_PYTHON) == "3.11"  # the base's; the daemonless build says this env's
    expected = images.labels_of(kind, PROJECT)
    expected.pop(images.LABEL_PYTHON)
    assert labels == expected
    last = {word: rest for word, rest in steps}
    assert last["USER"] == images.USER
    assert json.loads(last["CMD"]) == list(change.cmd or ())
    assert json.loads(last["ENTRYPOINT"]) == list(change.entrypoint or ())
    assert sorted(f"{p}/tcp" for p in last["EXPOSE"].split()) == sorted(change.exposed_ports)
    if kind is images.POD:
        assert f"chown {images.USER} /{images.WORK_DIR}" in last["RUN"]
    else:
        assert copies[f"/{images.BIN_DIR}/dormant"] == images.CLI_SCRIPT
        assert "COPY --chmod=755 deploy/images/dormant" in dockerfile.read_text()
        assert os.access(REPO / images.CLI_SCRIPT, os.X_OK)
    ignore = (REPO / f"deploy/images/{kind.name}.Dockerfile.dockerignore").read_text().split()
    assert {"**/__pycache__", "**/*.pyc", "**/.*"} <= set(ignore)


@pytest.mark.parametrize("kind", [images.POD, images.CONTROL], ids=lambda k: k.name)
def test_the_requirements_files_hold_what_the_kind_needs(kind: images.ImageKind) -> None:
    text = (REPO / f"deploy/images/requirements-{kind.name}.txt").read_text()
    names = {pin.partition("==")[0] for pin in images.parse_requirements_file(text)}
    needed = {canonicalize_name(r.name) for r in images.kind_requirements(PROJECT, kind)}
    assert needed <= names, needed - names
    assert "dormant" not in names


# ---- what the pod image says it provides is what its pods claim by ----------------------------------


def test_the_pod_image_labels_are_what_pods_advertise_and_versions_are_published_with() -> None:
    labels = images.labels_of(images.POD, PROJECT)
    base_runtime, interface = labels[images.LABEL_BASE_RUNTIME], labels[images.LABEL_PLATFORM_INTERFACE]
    assert (base_runtime, interface) == (BASE_RUNTIME, PLATFORM_INTERFACE)
    assert interface == DEFAULT_PLATFORM_INTERFACE
    defaults = inspect.signature(Pod).parameters
    assert defaults["base_images"].default == (base_runtime,)
    assert defaults["platform_interfaces"].default == (interface,)
    values = yaml.safe_load((REPO / "deploy/helm/dormant/values.yaml").read_text())
    assert values["pool"]["baseImages"] == [base_runtime]
    assert values["pool"]["platformInterfaces"] == [interface]
    assert values["podSecurityContext"]["runAsUser"] == images.UID
    assert values["images"]["pod"]["repository"].endswith("/" + images.POD.repository)
    assert values["images"]["server"]["repository"].endswith("/" + images.CONTROL.repository)
    pool = (REPO / "deploy/helm/dormant/templates/pool.yaml").read_text()
    assert "command: [python, -m, dormant_sidecar]" in pool
    assert images.config_change(images.POD, PROJECT).cmd == ("python", "-m", "dormant_sidecar")
    for component in ("gateway", "controller"):
        template = (REPO / f"deploy/helm/dormant/templates/{component}.yaml").read_text()
        assert f"command: [dormant, {component}]" in template
    assert images.config_change(images.CONTROL, PROJECT).entrypoint == ("dormant",)
