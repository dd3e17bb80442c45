"""Whether the cluster can ever hold a run's placement group, asked before waiting for room.

A request larger than the cluster's total (more CPUs than it has, a GPU where it has none, a
bundle larger than its largest node, more STRICT_SPREAD bundles than nodes) would otherwise
wait the whole ``runtime.placement_timeout_s`` and then fail. The ceiling is the cluster's
current total, or, under an autoscaler, the most its node groups can grow to (no check when
that maximum, or whether an autoscaler runs, is unknown).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import ray

from deca_ray.config import RuntimeConfig
from deca_ray.errors import RuntimeSetupError

_RESOURCES = ("CPU", "GPU")
_EPSILON = 1e-9


def check_can_ever_fit(runtime: RuntimeConfig, bundles: Sequence[Mapping[str, float]]) -> None:
    """Raise at once when ``bundles`` can never be placed on this cluster, naming what to change."""
    ceiling, autoscaled = _ceiling()
    if ceiling is None:
        return
    problems, hints = _over_totals(runtime, bundles, ceiling, autoscaled)
    if not autoscaled:
        problems += _over_nodes(runtime, bundles, hints)
    if problems:
        raise RuntimeSetupError(
            f"{len(bundles)} client actor(s) needing {_describe(bundles)} can never be placed: {'; '.join(problems)}. "
            f"{' '.join(dict.fromkeys(hints))}"
        )


def _over_totals(runtime: RuntimeConfig, bundles: Sequence[Mapping[str, float]], ceiling: Mapping[str, float],
                 autoscaled: bool) -> tuple[list[str], list[str]]:
    problems, hints = [], []
    has = "can grow to at most" if autoscaled else "has"
    for name in _RESOURCES:
        needed = sum(bundle.get(name, 0.0) for bundle in bundles)
        available = float(ceiling.get(name, 0.0))
        if needed <= available + _EPSILON:
            continue
        problems.append(f"they need {needed:g} {name} in total and the cluster {has} {available:g}")
        if name == "GPU" and available == 0:
            hints.append("This cluster has no GPU: set runtime.gpus_per_client=0 (or run on GPU nodes).")
        else:
            setting = "runtime.cpus_per_client" if name == "CPU" else "runtime.gpus_per_client"
            hints.append(f"Lower {setting} or num_clients (or runtime.clients_per_actor), or add nodes.")
    return problems, hints


def _over_nodes(runtime: RuntimeConfig, bundles: Sequence[Mapping[str, float]], hints: list[str]) -> list[str]:
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if not nodes:
        return []
    problems = []
    for name in _RESOURCES:
        largest_bundle = max(bundle.get(name, 0.0) for bundle in bundles)
        largest_node = max(float(node.get(name, 0.0)) for node in nodes)
        if largest_node + _EPSILON < largest_bundle <= sum(float(node.get(name, 0.0)) for node in nodes) + _EPSILON:
            problems.append(f"one actor needs {largest_bundle:g} {name} and the largest node has {largest_node:g}")
            hints.append("Lower runtime.clients_per_actor or the per-client resources, or add larger nodes.")
    if runtime.placement_strategy == "STRICT_SPREAD" and len(bundles) > len(nodes):
        problems.append(f"STRICT_SPREAD puts each of the {len(bundles)} actors on its own node and the cluster has "
                        f"{len(nodes)}")
        hints.append("Use runtime.placement_strategy SPREAD or PACK, or add nodes.")
    return problems


def _ceiling() -> tuple[Mapping[str, float] | None, bool]:
    """(the most resources the cluster can have, whether an autoscaler may add nodes); (None, True): unknown.

    Autoscaler v2 (KubeRay) publishes its node groups' maximum. Otherwise the monitor's status report
    tells: a static cluster's monitor names each node type ``node_<id>``, an autoscaler names its own.
    The embedded cluster this process started is static even before its monitor reports.
    """
    from ray._private.state import state

    from deca_ray.runtime.cluster import started_embedded

    try:
        maximum = state.get_max_resources_from_cluster_config()
        kind = None if maximum is not None else _monitor_kind()
    except Exception:  # an older GCS, or no access: no judgement
        return None, True
    if maximum is not None:
        return maximum, True
    if kind == "static" or started_embedded():
        return ray.cluster_resources(), False
    return None, True


def _monitor_kind() -> str | None:
    """``static`` / ``autoscaled`` from the monitor's last status report; None before its first one."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get("__autoscaling_status")
    if not raw:
        return None
    mapping = json.loads(raw).get("autoscaler_report", {}).get("node_type_mapping") or {}
    if not mapping:  # a first report, before the monitor has listed any node (seen with an autoscaler)
        return None
    return "autoscaled" if any(kind != f"node_{node}" for node, kind in mapping.items()) else "static"


def _describe(bundles: Sequence[Mapping[str, float]]) -> str:
    first = bundles[0]
    return " + ".join(f"{first.get(name, 0.0):g} {name}" for name in _RESOURCES if first.get(name)) + " each"
