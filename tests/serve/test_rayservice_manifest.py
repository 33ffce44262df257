"""deploy/kuberay/rayservice.yaml: a RayService whose serveConfigV2 names a real builder and a
valid config mounted on every pod, with tokens from a Secret."""
from __future__ import annotations

import importlib
from pathlib import Path

import ray
import yaml

import rayal
from rayal.config.loader import config_from_dict

PATH = Path(__file__).resolve().parents[2] / "deploy" / "kuberay" / "rayservice.yaml"


def test_rayservice_manifest_is_consistent():
    docs = [d for d in yaml.safe_load_all(PATH.read_text()) if d]
    (service,) = [d for d in docs if d["kind"] == "RayService"]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert service["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    module, _, name = app["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    mount_dir, _, file = app["args"]["config"].rpartition("/")
    config = config_from_dict(yaml.safe_load(cm["data"][file]), source=file)
    assert config.serve.port == serve_config["http_options"]["port"]
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["authOptions"]["mode"] == "token"
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for t in templates:
        container = t["spec"]["containers"][0]
        assert container["image"].endswith(f"rayal:{rayal.__version__}")
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in t["spec"]["volumes"]}
        assert volumes[mounts[mount_dir]]["configMap"]["name"] == cm["metadata"]["name"]
        assert config.output_dir.startswith(tuple(mounts)) and config.pool.state_dir.startswith(tuple(mounts))
    env = {e["name"] for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"RAYAL_SERVE_ADMIN_TOKEN", "RAYAL_SERVE_ANNOTATOR_TOKEN"} <= env
