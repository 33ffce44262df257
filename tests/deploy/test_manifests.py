"""deploy/: every KubeRay manifest has the fields its CRD requires and agrees with the project
(image tag = package version, rayVersion = installed Ray, entrypoints = real commands, configs
valid); the images build on the CUDA release of the installed torch, with the constraints."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import ray
import torch
import yaml

import rayal
from rayal.cli.main import build_parser, main
from rayal.config.loader import config_from_dict

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "kuberay").glob("*.yaml"))
IMAGE_WORKDIR = "/app"   # WORKDIR of both Dockerfiles: jobs/ is at /app/jobs
# A subcommand another engineer is adding right now; an entry point may name it before it lands.
PENDING_COMMANDS = {"tune"}


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict]:
    return [d for d in documents() if d["kind"] == kind]


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def cluster_specs() -> list[tuple[str, dict]]:
    specs = [(d["metadata"]["name"], d["spec"]) for d in of_kind("RayCluster")]
    return specs + [(d["metadata"]["name"], d["spec"]["rayClusterSpec"]) for d in of_kind("RayJob")
                    if "rayClusterSpec" in d["spec"]]


def pod_templates() -> list[tuple[str, dict]]:
    out = []
    for name, spec in cluster_specs():
        out.append((f"{name}/head", spec["headGroupSpec"]["template"]))
        out += [(f"{name}/{g['groupName']}", g["template"]) for g in spec.get("workerGroupSpecs", [])]
    return out


def test_every_document_has_the_common_fields():
    assert {p.name for p in MANIFESTS} >= {"raycluster.yaml", "rayjob-score.yaml", "rayjob-tune.yaml"}
    docs = documents()
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"]["name"], doc
    for doc in docs:
        if doc["kind"] in ("RayCluster", "RayJob", "RayService"):
            assert doc["apiVersion"] == "ray.io/v1"
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate kind/name"


@pytest.mark.parametrize("name,spec", cluster_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_cluster_specs_have_the_required_fields(name, spec):
    assert spec["rayVersion"] == ray.__version__
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams are strings"
    assert head["rayStartParams"]["num-cpus"] == "0", "nothing is scheduled on the head"
    assert head["template"]["spec"]["containers"][0]["image"]
    assert spec["authOptions"]["mode"] == "token"
    groups = spec["workerGroupSpecs"]
    assert groups and len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        assert isinstance(g["rayStartParams"], dict) and g["template"]["spec"]["containers"]
        assert 0 <= g["minReplicas"] <= g.get("replicas", g["minReplicas"]) <= g["maxReplicas"], g
    gpu = [g for g in groups
           if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu, "a GPU worker group"
    assert spec["enableInTreeAutoscaling"] is True and gpu[0]["minReplicas"] < gpu[0]["maxReplicas"]


def test_long_lived_cluster_is_fault_tolerant():
    (cluster,) = of_kind("RayCluster")
    ft = cluster["spec"]["gcsFaultToleranceOptions"]
    host, _, port = ft["redisAddress"].partition(":")
    services = {d["metadata"]["name"]: d for d in of_kind("Service")}
    assert host in services and int(port) in [p["port"] for p in services[host]["spec"]["ports"]]
    ref = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    redis = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == host)
    env = redis["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": ref["name"], "key": ref["key"]} in [e["valueFrom"]["secretKeyRef"] for e in env]


def test_images_are_tagged_with_the_package_version():
    images = [c["image"] for _, t in pod_templates() for c in t["spec"]["containers"]]
    assert images
    for image in images:
        repo, _, tag = image.rpartition(":")
        assert repo.rsplit("/", 1)[-1] in ("rayal", "rayal-cpu") and tag == rayal.__version__, image


def test_version_is_one_everywhere(capsys):
    project = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert project == rayal.__version__
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"rayal {rayal.__version__}"


def test_rayjobs_have_an_entrypoint_and_one_cluster_source():
    clusters = {d["metadata"]["name"] for d in of_kind("RayCluster")}
    jobs = of_kind("RayJob")
    assert len(jobs) >= 2
    for job in jobs:
        spec = job["spec"]
        assert spec["entrypoint"].strip()
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), job["metadata"]["name"]
        if "clusterSelector" in spec:
            assert spec["clusterSelector"]["ray.io/cluster"] in clusters
        if spec.get("submissionMode"):
            assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")


def configmap_files() -> dict[str, dict]:
    return {f"/etc/rayal/{key}": yaml.safe_load(text)
            for cm in of_kind("ConfigMap") if cm["metadata"]["name"] == "rayal-configs"
            for key, text in cm["data"].items()}


def entrypoint_argv(entrypoint: str) -> list[str]:
    """A RayJob entrypoint as the rayal argv it runs (``rayal X ...`` or ``python jobs/X.py ...``)."""
    from rayal.cli.submit import job_argv

    words = shlex.split(entrypoint)
    if words[0] == "rayal":
        return words[1:]
    assert words[0] == "python" and words[1].startswith(f"{IMAGE_WORKDIR}/jobs/"), entrypoint
    script = REPO / words[1][len(IMAGE_WORKDIR) + 1:]
    assert script.is_file(), f"{words[1]}: no {script.relative_to(REPO)} in the repository"
    forwards = re.search(r'job_entry\("(\w+)"\)', script.read_text()).group(1)
    config = words[words.index("--config") + 1]
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    return job_argv(forwards, config, overrides)


def test_entrypoints_are_real_commands_with_valid_configs():
    files = configmap_files()
    known = subcommands()
    checked = 0
    for job in of_kind("RayJob"):
        argv = entrypoint_argv(job["spec"]["entrypoint"])
        if argv[0] not in known and argv[0] in PENDING_COMMANDS:
            continue   # `rayal run` / `rayal tune` are not registered yet: nothing to parse against
        assert argv[0] in known, f"{job['metadata']['name']}: `rayal {argv[0]}` is not a command"
        args = build_parser().parse_args(argv)
        assert args.config in files, f"{args.config} is not in the rayal-configs ConfigMap"
        config_from_dict(files[args.config], args.overrides, source=args.config)
        checked += 1
    assert checked >= 1


def test_configmap_configs_are_valid_and_mounted():
    files = configmap_files()
    assert set(files) >= {"/etc/rayal/score-s3.yaml", "/etc/rayal/tune.yaml"}
    for path, raw in files.items():
        config = config_from_dict(raw, source=path)   # raises naming the bad field
        assert config.output_dir.startswith("s3://") and config.data.manifest.startswith("s3://")
    for name, template in pod_templates():
        if name.endswith("/head"):
            volumes = {v["name"]: v for v in template["spec"]["volumes"]}
            mounts = {m["mountPath"]: m["name"] for m in template["spec"]["containers"][0]["volumeMounts"]}
            assert volumes[mounts["/etc/rayal"]]["configMap"]["name"] == "rayal-configs", name


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", path.read_text(), re.M))


def test_gpu_image_matches_the_torch_cuda_build():
    args = dockerfile_args(DEPLOY / "Dockerfile")
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM nvidia/cuda:${CUDA_VERSION}-" in text
    major_minor = ".".join(args["CUDA_VERSION"].split(".")[:2])
    if torch.version.cuda is None:
        pytest.skip("the installed torch is a CPU build: nothing to match the CUDA base against")
    assert major_minor == torch.version.cuda
    assert args["TORCH_INDEX"].endswith("/cu" + torch.version.cuda.replace(".", ""))


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cpu"])
def test_images_install_rayal_with_the_constraints(name):
    text = (DEPLOY / name).read_text()
    assert re.search(r"pip install .*-c constraints\.txt .*'\.\[s3,gcs\]'", text)
    assert "COPY constraints.txt" in text or re.search(r"COPY .*constraints\.txt", text)
    assert f"WORKDIR {IMAGE_WORKDIR}" in text and "COPY jobs ./jobs" in text
    assert "wget" in text   # KubeRay's probes
    if name.endswith(".cpu"):
        assert dockerfile_args(DEPLOY / name)["TORCH_INDEX"].endswith("/cpu")
