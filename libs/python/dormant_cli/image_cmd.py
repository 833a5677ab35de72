"""``dormant image``: Dormant's own container images, built without a daemon (``dormant_codegen.images``).

``build --kind pod|control --base REF --push LOCATION`` pulls the base image (Python 3.11, by digest),
writes the layers (this environment's third-party libraries, the repository's packages) and pushes the
image to ``LOCATION/pod`` or ``LOCATION/server`` under the project's version (or ``--tag``); the same
source, environment and base give the same digest. ``requirements --kind …`` prints the third-party
libraries the kind takes from this environment, the pinned list the Dockerfiles install.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CommandError, Subparsers, add_command, add_json_flag, show
from .output import print_lines, progress


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "image",
        help="Dormant's container images (pod, control): build and push them without a daemon",
        example="dormant image build --kind pod --base oci://registry-1.docker.io/library/python:3.11-slim"
        " --push oci://registry.example.com/dormant",
    )
    actions = p.add_subparsers(dest="image_action", required=True, metavar="ACTION")
    build = add_command(
        actions,
        "build",
        help="build the pod or control image on a Python 3.11 base image and push it to a registry",
        example="dormant image build --kind control --base oci://mirror.example.com/library/python:3.11-slim"
        " --push oci://registry.example.com/dormant",
    )
    build.add_argument("--kind", required=True, choices=("pod", "control"), help="which image")
    build.add_argument(
        "--base",
        required=True,
        metavar="REF",
        help="the base image, oci://host/repository[:tag][@sha256:…] (oci+http:// on this machine);"
        " Python 3.11 of this environment's architecture; name it by digest to build the same image again",
    )
    build.add_argument(
        "--push",
        required=True,
        metavar="LOCATION",
        help="the registry and prefix, oci://host[:port]/prefix: the image goes to <prefix>/pod or"
        " <prefix>/server",
    )
    build.add_argument(
        "--tag", action="append", dest="tags", metavar="TAG", help="tag (repeatable; default: the version)"
    )
    build.add_argument("--source", type=Path, help="the Dormant repository (default: the one running)")
    build.add_argument(
        "--requirements",
        type=Path,
        metavar="FILE",
        help="fail unless this environment's libraries are exactly these name==version lines"
        " (deploy/images/requirements-<kind>.txt)",
    )
    build.add_argument(
        "--base-name",
        metavar="NAME",
        help="the base's name recorded in the image (default: --base without its scheme), e.g. the"
        " upstream name when --base is a mirror",
    )
    add_json_flag(build)
    build.set_defaults(run=run_build)
    reqs = add_command(
        actions,
        "requirements",
        help="print the third-party libraries (name==version) an image takes from this environment",
        example="dormant image requirements --kind pod > deploy/images/requirements-pod.txt",
    )
    reqs.add_argument("--kind", required=True, choices=("pod", "control"), help="which image")
    reqs.add_argument("--source", type=Path, help="the Dormant repository (default: the one running)")
    reqs.set_defaults(run=run_requirements)


def run_build(args: argparse.Namespace) -> int:
    from dormant_codegen import images  # lazy: start-up time
    from dormant_layers import LayerStoreError  # lazy: start-up time

    try:
        target = images.target_location(args.push)
        with progress(f"building the {args.kind} image", piped=False):
            built, base_registry = images.build_container(
                args.kind,
                base=args.base,
                source=args.source,
                requirements_file=args.requirements,
                base_name=args.base_name,
                push_to=target,
            )
        project_version = images.read_project(args.source or images.find_source_root() or Path()).version
        tags = args.tags or [project_version]
        with progress(f"pushing to {target}", piped=False):
            pushed = images.push_container(built, target, tags, base_registry=base_registry)
    except (LayerStoreError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    for note in pushed.notes:
        print(f"note: {note}", file=sys.stderr)
    assert pushed.target is not None
    repository = f"{pushed.target.location.host}/{pushed.target.repository}"
    reference = f"{repository}@{pushed.digest}"
    base = f"{built.image.base.reference.name} ({built.image.base.manifest_digest})"
    data = {
        "kind": pushed.kind.name,
        "repository": repository,
        "tags": tags,
        "digest": pushed.digest,
        "reference": reference,
        "base": built.image.base.reference.name,
        "baseDigest": built.image.base.manifest_digest,
        "layers": [layer.digest for layer in built.image.layers],
        "libraries": len(built.pins),
    }
    return show(
        args,
        data,
        lambda: print_lines(
            [
                ("image", reference),
                ("tags", ", ".join(tags)),
                ("base", base),
                ("layers", f"{len(built.image.base.layers)} of the base + 2 ({len(built.pins)} libraries)"),
            ]
        ),
    )


def run_requirements(args: argparse.Namespace) -> int:
    from dormant_codegen import images  # lazy: start-up time
    from dormant_layers import LayerStoreError  # lazy: start-up time

    try:
        root = args.source or images.find_source_root()
        if root is None:
            raise CommandError("name the Dormant repository (--source)")
        project = images.read_project(root)
        kind = images.KINDS[args.kind]
        sys.stdout.write(images.requirements_text(kind, images.list_pins(project, kind)))
    except LayerStoreError as exc:
        raise CommandError(str(exc)) from exc
    return 0
