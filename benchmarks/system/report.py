"""Render the newest system result into BENCHMARKS.md between ``<!-- system:begin -->`` / ``<!-- system:end -->``.

Every number written here is read from the result file; nothing is measured or computed
beyond unit formatting, so BENCHMARKS.md always matches a committed JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.markdown import update_markdown
from benchmarks.results import newest_result

SECTION_ORDER = ("runtime_overhead", "exchange", "traffic", "memory", "driver_bytes", "driver_time")


def render_newest_system(results_dir: Path, markdown: Path) -> Path:
    """Write the newest ``system-*.json`` of ``results_dir`` into ``markdown``; returns the result used."""
    result_path = newest_result(results_dir)
    update_markdown(markdown, render_system(json.loads(result_path.read_text()), result_path), name="system")
    return result_path


def render_system(result: dict[str, Any], source: Path | None = None) -> str:
    meta = result["metadata"]
    lines = ["## System efficiency (section S)", "", *_provenance(result, meta, source), "",
             "| ratio | measured | target | met? |", "|---|---|---|---|"]
    sections = result["sections"]
    lines += [_ratio_row(sections[name]) for name in SECTION_ORDER if name in sections]
    lines += ["", *_details(sections)]
    return "\n".join(lines) + "\n"


def _provenance(result: dict[str, Any], meta: dict[str, Any], source: Path | None) -> list[str]:
    git, machine, versions = meta["git"], meta["machine"], meta["versions"]
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    gpu = machine.get("gpu") or "no GPU"
    ram = f"{machine['ram_bytes'] / 2**30:.1f} GiB RAM" if machine.get("ram_bytes") else "RAM unknown"
    lines = [
        f"- commit: `{git.get('commit') or 'unknown'}`{dirty}; measured {meta['date_utc']}; "
        f"preset `{result['preset']['name']}`",
        f"- machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, {ram}, {gpu}",
        f"- python {versions['python']}, torch {versions['torch']}, ray {versions['ray']}",
    ]
    if source is not None:
        lines.append(f"- result file: `{source.as_posix()}`")
    return lines


def _ratio_row(entry: dict[str, Any]) -> str:
    rule = {"<=": "≤", "==": "="}[entry["rule"]]
    target = "—" if entry["target"] is None else f"{rule} {_number(entry['target'])}"
    met = {True: "yes", False: "**no**", None: "—"}[entry["met"]]
    return f"| {entry['label']} | {_number(entry['ratio'])} | {target} | {met} |"


def _details(sections: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "runtime_overhead" in sections:
        entry = sections["runtime_overhead"]
        settings = entry["settings"]
        lines.append(
            f"- Runtime: Ray {_seconds(entry['ray_step_s'])} vs reference {_seconds(entry['reference_step_s'])} "
            f"per inner step (median of {entry['samples']} steps; {settings['model']}, {settings['num_clients']} "
            f"clients, {settings['topology']}); reference: clients in turn with {settings['reference_torch_threads']} "
            f"torch threads; Ray: actors at once, {settings['ray_cpus_per_client']} CPU and "
            f"{settings['ray_torch_threads_per_actor']} torch thread(s) each."
        )
    if "exchange" in sections:
        entry = sections["exchange"]
        lines.append(f"- Exchange: Ray {_seconds(entry['ray_exchange_s'])} vs floor {_seconds(entry['floor_s'])} "
                     f"(blocks of {_bytes(entry['block_bytes'])}; reference loop's exchange "
                     f"{_seconds(entry['reference_exchange_s'])}).")
        if "profile" in entry:  # results written before the exchange profile existed have none
            profile = entry["profile"]
            lines.append(f"- Exchange profile: the slowest client's own arithmetic (combine, h, BMA, write-back) "
                         f"{_seconds(profile['slowest_client_arithmetic_s'])} "
                         f"({profile['arithmetic_share']:.0%} of the phase); Ray's argument fetch, scheduling and "
                         f"replies {_seconds(profile['ray_transport_and_scheduling_s'])}. The floor counts only the "
                         "weighted sums, so DECA's h and BMA passes are part of what the ratio charges to "
                         "the exchange.")
    if "traffic" in sections:
        entry = sections["traffic"]
        lines.append(f"- Traffic: expected {entry['expected_fraction']} (B = {entry['num_blocks']}), "
                     f"exact for every client: {'yes' if entry['exact_for_every_client'] else 'no'}; "
                     f"against the whole model incl. frozen embeddings: {_number(entry['ratio_against_whole_model'])}.")
    if "memory" in sections:
        lines += _memory_lines(sections["memory"])
    if "driver_time" in sections:
        lines += _scale_lines(sections["driver_time"], sections.get("driver_bytes"))
    return lines


def _memory_lines(entry: dict[str, Any]) -> list[str]:
    rss = entry["rss"]
    return [f"- Memory: tensors {_bytes(entry['deca_tensor_bytes'])} (DECA) vs "
            f"{_bytes(entry['full_adam_tensor_bytes'])} "
            f"(full Adam), B = {entry['num_blocks']}; process peak RSS {_bytes(rss['deca']['rss_peak_bytes'])} vs "
            f"{_bytes(rss['full_adam']['rss_peak_bytes'])} (ratio {_number(entry['rss_ratio'])}; after loading: "
            f"{_bytes(rss['deca']['rss_after_load_bytes'])} vs {_bytes(rss['full_adam']['rss_after_load_bytes'])})."]


def _scale_lines(entry: dict[str, Any], bytes_entry: dict[str, Any] | None) -> list[str]:
    lines = ["", "Scale sweep (tiny LLaMA, ring, one round; medians per inner step):", "",
             "| clients | actors | driver CPU | step | step − slowest client | driver received | driver sent "
             "| actor start-up |",
             "|---|---|---|---|---|---|---|---|"]
    for row in entry["table"]:
        actors = row.get("actors", row["num_clients"])  # results before virtual clients: one client per actor
        lines.append(f"| {row['num_clients']} | {actors} | {_seconds(row['driver_cpu_s_per_step'])} "
                     f"| {_seconds(row['step_time_s'])} | {_seconds(row['step_minus_slowest_compute_s'])} "
                     f"| {_bytes(row['driver_received_bytes_per_step'])} "
                     f"| {_bytes(row['driver_sent_bytes_per_step'])} | {_seconds(row['actor_startup_s'])} |")
    if entry.get("stopped"):
        stopped = entry["stopped"]
        lines += ["", f"The sweep stopped before {stopped['at_clients']} clients: {stopped['reason']}."]
    if bytes_entry is not None:
        large, small = bytes_entry["large"], bytes_entry["small"]
        lines += ["", f"Driver bytes against block size, {small['num_clients']} clients: "
                      f"with {large['model']}'s blocks "
                      f"({_number(bytes_entry['block_bytes_ratio'])}× the sweep's) the driver received "
                      f"{_bytes(large['driver_received_bytes_per_step'])} and sent "
                      f"{_bytes(large['driver_sent_bytes_per_step'])} per step, against "
                      f"{_bytes(small['driver_received_bytes_per_step'])} and "
                      f"{_bytes(small['driver_sent_bytes_per_step'])}."]
    return lines


def _number(value: float) -> str:
    return f"{value:.3g}"


def _seconds(value: float) -> str:
    return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


def _bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"
