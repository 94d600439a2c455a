#!/usr/bin/env python3
"""Renders a Helm chart with real Helm (the helm-python-sdk, Helm's Go SDK as a C library) and prints the manifests as
one multi-document YAML stream, like `helm template`.

    python3 hacks/render-chart.py charts/gardener-extension-cri-resmgr --namespace extension-cri-resmgr \\
        --set replicaCount=1 --values my-values.yaml

CHART is a chart directory or a packaged .tgz. Values are merged like Helm does: the chart's values.yaml, then each
--values file in order, then each --set, then each --set-string. Documents come in Helm's install order (Namespaces,
ServiceAccounts, Secrets, ConfigMaps, RBAC, Services, workloads, ...), each under a `# Source:` comment.

Rendering is offline: `lookup` finds nothing, and `.Capabilities` are Helm's defaults unless --kube-version and
--api-versions describe the target cluster (gardenlet renders with the seed's). Install helm-python-sdk with
`bash hacks/install-helm.sh`.

Exit codes: 0 rendered, 1 Helm or value error, 2 usage error, 3 helm-python-sdk is not installed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

# Helm's install order (pkg/release/util/kind_sorter.go); unknown kinds go last, sorted by name.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]

KIND = re.compile(r"^kind:\s*['\"]?([A-Za-z0-9]+)", re.MULTILINE)
DOCUMENT_SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)


def import_helm():
    try:
        import helm_python  # noqa: PLC0415 - imported late so the message below can explain what is missing
    except ImportError as error:
        sys.stderr.write(
            f"render-chart: the Python package helm_python is not installed ({error}).\n"
            "render-chart: install it with `bash hacks/install-helm.sh` (pip install helm-python-sdk==0.2.2).\n"
        )
        sys.exit(3)
    return helm_python


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Layers user values as Helm does: maps merge key by key, anything else replaces. A null stays, so that Helm
    removes the chart's default for that key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def user_values(helm, args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in args.values:
        with open(path, encoding="utf-8") as file:
            values = merge(values, helm.values_from_yaml(file.read()) or {})
    for expression in args.set:
        values = merge(values, helm.parse_set_string(expression))
    for expression in args.set_string:
        values = merge(values, helm.parse_set_string_values(expression))
    return values


def render(helm, args: argparse.Namespace) -> dict[str, str]:
    values = user_values(helm, args)
    with helm.Chart.load(args.chart) as chart:
        name = args.name or chart.name
        helm.validate_release_name(name)
        if args.kube_version is None and not args.api_versions:
            return chart.render(values, name=name, namespace=args.namespace, is_install=True)
        # The binding's Chart.render does not expose Helm's capability options yet; its C ABI takes them in the same
        # options document (`kube_version`, `api_versions`), so call it directly.
        from helm_python import _native  # noqa: PLC0415

        options: dict[str, Any] = {"name": name, "namespace": args.namespace, "is_install": True}
        if args.kube_version is not None:
            options["kube_version"] = args.kube_version
        if args.api_versions:
            options["api_versions"] = args.api_versions
        rendered = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))
        return json.loads(rendered)


def documents(manifests: dict[str, str]) -> list[tuple[str, str]]:
    """(source template, document) pairs of the rendered YAML templates, empty documents left out."""
    found = []
    for source, text in manifests.items():
        if not source.endswith((".yaml", ".yml", ".json")):
            continue  # NOTES.txt and the like
        for document in DOCUMENT_SEPARATOR.split(text):
            if any(line.strip() and not line.lstrip().startswith("#") for line in document.splitlines()):
                found.append((source, document.strip("\n")))
    return found


def install_order(item: tuple[str, str]) -> tuple[int, str, str]:
    source, document = item
    match = KIND.search(document)
    kind = match.group(1) if match else ""
    rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
    return rank, kind, source


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="render-chart.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("chart", help="chart directory or .tgz")
    parser.add_argument("--name", help="release name (default: the chart's name)")
    parser.add_argument("--namespace", "-n", default="default", help="release namespace (default: default)")
    parser.add_argument("--values", "-f", action="append", default=[], metavar="FILE", help="values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set values (repeatable)")
    parser.add_argument(
        "--set-string", action="append", default=[], metavar="KEY=VALUE", help="set string values (repeatable)"
    )
    parser.add_argument("--kube-version", help="Kubernetes version for .Capabilities.KubeVersion, e.g. 1.20.2")
    parser.add_argument(
        "--api-versions",
        "-a",
        action="append",
        default=[],
        metavar="GROUP/VERSION[/KIND]",
        help="extra .Capabilities.APIVersions (repeatable, or comma-separated)",
    )
    args = parser.parse_args(argv)
    args.api_versions = [v for group in args.api_versions for v in group.split(",") if v]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    helm = import_helm()
    try:
        manifests = render(helm, args)
    except helm.HelmError as error:
        sys.stderr.write(f"render-chart: {args.chart}: {error}\n")
        return 1
    except OSError as error:
        sys.stderr.write(f"render-chart: {error}\n")
        return 1
    for source, document in sorted(documents(manifests), key=install_order):
        sys.stdout.write(f"---\n# Source: {source}\n{document}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
