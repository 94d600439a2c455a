#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (corpus/<target>/) from the repository's examples and test fixtures.

Run from anywhere: python3 fuzz/seed-corpus.py. The files are small and committed; re-run it when the examples change.
"""
import base64
import copy
import json
import pathlib

import yaml

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


def load_all(path):
    return [document for document in yaml.safe_load_all((ROOT / path).read_text()) if document]


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    if not isinstance(data, (bytes, str)):
        data = json.dumps(data, separators=(",", ":"), default=str)
    if isinstance(data, str):
        data = data.encode()
    (directory / name).write_bytes(data)


def provider_configs():
    shoot = load("examples/shoot.yaml")
    yield "example-shoot", shoot["spec"]["extensions"][0]["providerConfig"]
    gardener_shoot = load("test/fixtures/gardener/shoot.yaml")
    for extension in gardener_shoot["spec"].get("extensions", []):
        if extension["type"] == "cri-resmgr-extension" and "providerConfig" in extension:
            yield "gardener-shoot", extension["providerConfig"]
    yield "versioned", {
        "apiVersion": "cri-resmgr.extensions.gardener.cloud/v1alpha1",
        "kind": "CriResmgrConfig",
        "workerPools": ["cpu-worker"],
        "configs": {
            "force": "policy:\n  Active: static-pools\n",
            "group.cpu": "policy:\n  Active: balloons\n  balloons:\n    PinCPU: true\n",
            "node.worker-1": "policy:\n  Active: podpools\nlogger:\n  Debug: policy\n",
            "EXTRA_OPTIONS": "--metrics-interval=10s --log-source",
        },
    }
    yield "null", None


def oscs():
    documents = [("example", load("examples/30-osc-cpu-worker.yaml"))]
    for name, path in [("gardener", "test/fixtures/gardener/osc.yaml"), ("reconcile", "test/fixtures/osc/reconcile.yaml")]:
        documents += [(f"{name}-{i}", osc) for i, osc in enumerate(load_all(path))]
    for name, osc in documents:
        if osc.get("kind") != "OperatingSystemConfig":
            continue
        yield name, osc
        # The kubelet config file in plain text, so that the fuzzer mutates YAML rather than base64.
        plain = copy.deepcopy(osc)
        for file in plain["spec"].get("files", []):
            inline = file.get("content", {}).get("inline")
            if inline and inline.get("encoding") == "b64":
                inline["data"] = base64.b64decode(inline["data"]).decode()
                inline["encoding"] = ""
        yield name + "-plain", plain


def review(request):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def reviews():
    shoot = load("examples/shoot.yaml")
    shoot_kind = {"group": "core.gardener.cloud", "version": "v1beta1", "kind": "Shoot"}
    shoot_resource = {"group": "core.gardener.cloud", "version": "v1beta1", "resource": "shoots"}
    base = {"uid": "0b5d0c6e-2f0e-4b1e-9a51-5f0c6f0d7e01", "kind": shoot_kind, "resource": shoot_resource,
            "name": "local", "namespace": "garden-dev", "userInfo": {"username": "fuzz"}}
    yield "shoot-create", review(dict(base, operation="CREATE", object=shoot))
    old = copy.deepcopy(shoot)
    old["spec"]["extensions"][0]["providerConfig"]["configs"]["default"] = "policy:\n  Active: static\n"
    yield "shoot-update", review(dict(base, operation="UPDATE", object=shoot, oldObject=old))
    osc_kind = {"group": "extensions.gardener.cloud", "version": "v1alpha1", "kind": "OperatingSystemConfig"}
    osc_resource = {"group": "extensions.gardener.cloud", "version": "v1alpha1", "resource": "operatingsystemconfigs"}
    for name, osc in oscs():
        if name.endswith("-plain"):
            continue
        osc["metadata"]["namespace"] = "shoot--dev--local"
        yield "osc-" + name, review({"uid": "6c1c1e7a-1d0b-4a55-8f7c-3c3b0f9b2a02", "kind": osc_kind,
                                      "resource": osc_resource, "name": osc["metadata"]["name"],
                                      "namespace": "shoot--dev--local", "operation": "CREATE",
                                      "userInfo": {"username": "gardenlet"}, "object": osc})
    # gardenlet's write of an OSC it wrote before: a new timestamp, versions, managedFields and status times in the
    # object and the old object (the strings the OSC webhook's kept answers do not depend on).
    for name, osc in oscs():
        if name != "example":
            continue
        written = {}
        for version, stamp in (("1041", "2026-12-01T16:40:01.5Z"), ("1040", "2026-12-01T15:38:20.123456789Z")):
            again = copy.deepcopy(osc)
            again["metadata"].update({
                "namespace": "shoot--dev--local", "resourceVersion": version,
                "annotations": {"gardener.cloud/timestamp": stamp, "gardener.cloud/operation": "reconcile"},
                "managedFields": [
                    {"manager": "gardenlet", "operation": "Update", "apiVersion": "extensions.gardener.cloud/v1alpha1",
                     "time": "2026-12-01T15:38:20Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                    {"manager": "os-gardenlinux", "operation": "Update", "subresource": "status",
                     "apiVersion": "extensions.gardener.cloud/v1alpha1", "time": "2026-12-01T15:39:02Z",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]})
            again["status"] = {"lastOperation": {"type": "Reconcile", "state": "Succeeded", "progress": 100,
                                                 "description": "Successfully reconciled",
                                                 "lastUpdateTime": "2026-12-01T15:39:02Z"}}
            written[version] = again
        yield "osc-written-again", review({"uid": "6c1c1e7a-1d0b-4a55-8f7c-3c3b0f9b2a03", "kind": osc_kind,
                                            "resource": osc_resource, "name": osc["metadata"]["name"],
                                            "namespace": "shoot--dev--local", "operation": "UPDATE",
                                            "userInfo": {"username": "gardenlet"}, "object": written["1041"],
                                            "oldObject": written["1040"]})


def main():
    for name, config in provider_configs():
        write("provider_config", name + ".json", config)
    write("provider_config", "config-body.yaml", "policy:\n  Active: topology-aware\n  ReservedResources:\n    CPU: 750m\n")
    write("provider_config", "extra-options.txt", "--metrics-interval=10s --log-source")
    for name, osc in oscs():
        write("osc_mutation", name + ".json", osc)
    for name, body in reviews():
        write("admission_review", name + ".json", body)
    images = (ROOT / "images.yaml").read_text()
    write("image_vector", "embedded", "1.32.0\n" + images)
    write("image_vector", "overwrite-arm64", """v1.31.2 arm64
images:
- name: cri-resmgr-installation
  repository: example.org/cri-resmgr-installation
  tag: "v0.9.2"
  targetVersion: ">= 1.28, < 1.32-0 || 1.33.x"
  architectures: [arm64]
- name: pause-container
  repository: example.org/pause
  tag: sha256:0000000000000000000000000000000000000000000000000000000000000000
  runtimeVersion: "~1.31"
- name: alpine
  ref: example.org/alpine:3.20
  targetVersion: "1.28 - 1.34, != 1.30.1"
""")


if __name__ == "__main__":
    main()
