#!/usr/bin/env python3
"""Generates the garden objects that register the extension with Gardener: a ControllerDeployment
(core.gardener.cloud/v1, `helm.rawChart` = the seed chart packaged by Helm, base64) and a ControllerRegistration for
the Extension type `cri-resmgr-extension`.

    python3 hacks/generate-controller-registration.py                 # writes examples/garden/controller-registration.yaml
    python3 hacks/generate-controller-registration.py --values v.yaml # embeds operator values (e.g. configs, image)
    python3 hacks/generate-controller-registration.py --check         # fails when the file is out of date

The output lives in examples/garden/ rather than examples/: `make dev` applies examples/*.yaml to the local control
plane, which has no gardener-apiserver to serve core.gardener.cloud. Apply it to a garden cluster with
`kubectl apply -f examples/garden/controller-registration.yaml`.

The chart archive is reproducible (entries sorted, fixed timestamps and owners), so regenerating an unchanged chart
gives the same file. Needs helm-python-sdk: `bash hacks/install-helm.sh`.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CHART = os.path.join(REPO, "charts", "gardener-extension-cri-resmgr")
DEFAULT_OUTPUT = os.path.join(REPO, "examples", "garden", "controller-registration.yaml")

# Names fixed by the ecosystem (src/constants.rs EXTENSION_TYPE) and Gardener's `extension-<name>` convention.
EXTENSION_TYPE = "cri-resmgr-extension"
# The one extension class the controller serves (src/constants.rs EXTENSION_CLASS_SHOOT).
EXTENSION_CLASS = "shoot"
NAME = "extension-cri-resmgr"

RAW_CHART = re.compile(r"^(\s*rawChart:\s*)(\S+)\s*$", re.MULTILINE)


def import_helm():
    try:
        import helm_python  # noqa: PLC0415
    except ImportError as error:
        sys.stderr.write(
            f"generate-controller-registration: the Python package helm_python is not installed ({error}).\n"
            "generate-controller-registration: install it with `bash hacks/install-helm.sh`.\n"
        )
        sys.exit(3)
    return helm_python


def reproducible(archive: bytes) -> bytes:
    """The same chart archive with sorted entries, zero timestamps and root ownership, so its bytes depend only on
    the chart's files (Helm stamps entries with the files' mtimes, which a git checkout sets to the checkout time)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as source:
        entries = sorted(
            ((member, source.extractfile(member).read()) for member in source.getmembers() if member.isfile()),
            key=lambda entry: entry[0].name,
        )
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.USTAR_FORMAT) as target:
            for member, content in entries:
                info = tarfile.TarInfo(member.name)
                info.size = len(content)
                info.mode = 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                target.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def package(helm, chart_dir: str) -> tuple[bytes, dict]:
    """The chart packaged by Helm (which applies .helmignore and validates Chart.yaml), made reproducible, and
    checked to load and render as an archive."""
    with tempfile.TemporaryDirectory() as destination:
        path = helm.package(chart_dir, destination=destination)
        with open(path, "rb") as file:
            archive = reproducible(file.read())
    with helm.Chart.load_archive(archive) as chart:
        metadata = chart.metadata
        chart.render(name=NAME, namespace="extension-cri-resmgr")
    return archive, metadata


def archive_digest(raw_chart: str) -> str:
    """What an archive holds (names and contents), independent of how it was compressed."""
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(raw_chart)), mode="r:gz") as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if member.isfile():
                digest.update(member.name.encode() + b"\0" + archive.extractfile(member).read() + b"\0")
    return "sha256:" + digest.hexdigest()


def comparable(text: str) -> str | None:
    """`text` with the chart archive replaced by the digest of its contents; None when the archive is unreadable."""
    try:
        return RAW_CHART.sub(lambda m: m.group(1) + archive_digest(m.group(2)), text)
    except (ValueError, tarfile.TarError, OSError, EOFError):
        return None


def generate(archive: bytes, metadata: dict, values: dict | None, chart_dir: str) -> str:
    chart = os.path.relpath(chart_dir, REPO)
    lines = [
        f"# Generated by hacks/generate-controller-registration.py from {chart} (chart {metadata['name']}"
        f" {metadata['version']}, app {metadata.get('appVersion', '')}). Do not edit; regenerate.",
        "# Apply to the garden cluster: kubectl apply -f examples/garden/controller-registration.yaml",
        "---",
        "apiVersion: core.gardener.cloud/v1",
        "kind: ControllerDeployment",
        "metadata:",
        f"  name: {NAME}",
        "helm:",
        f"  rawChart: {base64.b64encode(archive).decode()}",
    ]
    if values:
        # Flow style (JSON is YAML): what the operator passed with --values, merged over the chart's values.yaml.
        lines.append(f"  values: {json.dumps(values, sort_keys=True)}")
    lines += [
        "---",
        "apiVersion: core.gardener.cloud/v1beta1",
        "kind: ControllerRegistration",
        "metadata:",
        f"  name: {NAME}",
        "  annotations:",
        "    # The chart's pods meet the restricted Pod Security Standard (non-root, no privilege escalation, all",
        "    # capabilities dropped, RuntimeDefault seccomp); gardenlet labels the extension namespace with it.",
        "    security.gardener.cloud/pod-security-enforce: restricted",
        "spec:",
        "  deployment:",
        "    # Installed on a seed only when one of its shoots enables the extension.",
        "    policy: OnDemand",
        "    deploymentRefs:",
        f"    - name: {NAME}",
        "  resources:",
        "  - kind: Extension",
        f"    type: {EXTENSION_TYPE}",
        "    primary: true",
        "    # Not enabled for every shoot (no autoEnable; the former globallyEnabled: false): a Shoot opts in with",
        f"    # spec.extensions[].type: {EXTENSION_TYPE}.",
        "    # Only Extensions of shoot clusters (Gardener's default, spelled out): the controller serves the shoot class",
        "    # and leaves Extensions with spec.class seed or garden alone.",
        "    clusterCompatibility:",
        f"    - {EXTENSION_CLASS}",
        "    # Workerless shoots have no nodes for cri-resmgr.",
        "    workerlessSupported: false",
        "    # Gardener's defaults, spelled out: the reconcile deploys into the shoot, so its kube-apiserver must run;",
        "    # the delete runs the node cleaner in the shoot, so it must still run.",
        "    lifecycle:",
        "      reconcile: AfterKubeAPIServer",
        "      delete: BeforeKubeAPIServer",
        "      migrate: BeforeKubeAPIServer",
        "    reconcileTimeout: 3m",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="generate-controller-registration.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", default=DEFAULT_CHART, help="seed chart directory")
    parser.add_argument("--output", "-o", default=DEFAULT_OUTPUT, help="file to write ('-': stdout)")
    parser.add_argument("--values", "-f", action="append", default=[], metavar="FILE", help="values to embed")
    parser.add_argument("--check", action="store_true", help="only check that --output is up to date")
    args = parser.parse_args(argv)

    helm = import_helm()
    values: dict = {}
    for path in args.values:
        with open(path, encoding="utf-8") as file:
            values.update(helm.values_from_yaml(file.read()) or {})
    try:
        archive, metadata = package(helm, args.chart)
    except helm.HelmError as error:
        sys.stderr.write(f"generate-controller-registration: {args.chart}: {error}\n")
        return 1
    text = generate(archive, metadata, values, args.chart)

    if args.check:
        try:
            with open(args.output, encoding="utf-8") as file:
                current = file.read()
        except OSError as error:
            sys.stderr.write(f"generate-controller-registration: {error}\n")
            return 1
        if current != text and (comparable(current) is None or comparable(current) != comparable(text)):
            sys.stderr.write(
                f"generate-controller-registration: {os.path.relpath(args.output, REPO)} is out of date with "
                f"{os.path.relpath(args.chart, REPO)}: run `python3 hacks/generate-controller-registration.py`\n"
            )
            return 1
        return 0
    if args.output == "-":
        sys.stdout.write(text)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
