"""Timing one real ``ClientWorker`` inner step by phase, with marks at the step's own boundaries.

The step measured is the worker's own ``half_step`` then ``mix``; nothing of it is re-implemented.
For the duration of a ``StepTimer`` the client carries marks (removed on exit):

- its training forward is wrapped: a mark as ``half_step`` calls ``forward.loss`` and one as it returns;
- a forward pre-hook on decoder layer L (the lowest trained one) and a forward hook on the top layer:
  the forward splits into below L (embeddings or the frozen prefix, mask, rotary, frozen layers),
  layers L..top, and the final norm + head + loss. A cold prefix runs the decoder per example up
  to layer L first; the batch's own pass through layer L comes last, and its mark is the one kept;
- the active block's ``gradient`` and ``half_step`` are wrapped: the optimizer phase is flattening
  the gradient plus the method's local step (Adam for DECA). Between the forward's end and the
  gradient's flattening lies only ``loss.backward()``.

Every mark reads two clocks: wall time, and the process's CPU time (÷ torch threads), which on a
shared CPU machine leaves out the time the step waited for a core. On a GPU every mark
synchronises first, so each phase holds its own kernels (there only wall time means anything).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from benchmarks.step.flops import BatchShape
from deca_ray.client import ClientWorker

PHASES = ("forward_below", "forward_layers", "forward_head", "backward", "optimizer", "batch_and_bookkeeping", "mix")
"""In step order, except batch sampling, collation and the step's metrics, which surround the rest."""

NEIGHBOURS = 2
"""Blocks mixed in per step: a ring's two neighbours, Metropolis–Hastings weights 1/3 each."""


class Forward(Protocol):
    """What ``ClientWorker.half_step`` calls: the loss of a collated batch of shard ``indices``."""

    def loss(self, batch: Mapping[str, torch.Tensor], indices: Sequence[int]) -> torch.Tensor: ...


@dataclass(frozen=True)
class StepTimes:
    """One step's seconds by phase on one clock, and its half-step (every phase but the mix)."""

    phases_s: dict[str, float]
    half_step_s: float

    @property
    def step_s(self) -> float:
        """half_step + mix: one client's inner step."""
        return self.half_step_s + self.phases_s["mix"]


@dataclass(frozen=True)
class StepSample:
    """One timed inner step on both clocks, the batch it trained on, and its loss.

    ``cpu`` is this process's CPU time ÷ torch threads: blind to time spent waiting for a core
    (other processes on a shared machine), exact with one thread; with more, threads that spin
    while they wait for each other count too, so it reads high.
    """

    wall: StepTimes
    cpu: StepTimes
    batch: BatchShape
    loss: float


class PhaseClock:
    """Wall-clock and CPU-time marks by name (the last mark of a name wins), device-synchronised."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: dict[str, tuple[float, float]] = {}  # name → (perf_counter, process_time)

    def mark(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks[name] = (time.perf_counter(), time.process_time())

    def between(self, first: str, last: str, cpu: bool = False) -> float:
        clock = 1 if cpu else 0
        return self.marks[last][clock] - self.marks[first][clock]


class ClockedForward:
    """A training forward with marks at its start and end; keeps the shape of the batch it saw."""

    def __init__(self, inner: Forward, clock: PhaseClock) -> None:
        self.inner = inner
        self.clock = clock
        self.batch: BatchShape | None = None

    def loss(self, batch: Mapping[str, torch.Tensor], indices: Sequence[int]) -> torch.Tensor:
        self.batch = BatchShape.of(dict(batch))
        self.clock.mark("forward_start")
        loss = self.inner.loss(batch, indices)
        self.clock.mark("forward_end")
        return loss


class StepTimer:
    """Times ``client.half_step()`` + ``client.mix(...)`` by phase, with any training forward swapped in."""

    def __init__(self, client: ClientWorker, lowest_trained_layer: int) -> None:
        if client.block is None:
            raise ValueError("activate a block (client.begin_block) before timing its steps")
        self.client = client
        self.block = client.block
        self.layer = lowest_trained_layer
        self.clock = PhaseClock(client.device)
        self._own_forward = client.forward
        self._hooks: list[Any] = []

    def __enter__(self) -> StepTimer:
        layers = self.client.model.get_decoder().layers  # type: ignore[operator]
        self._hooks = [
            layers[self.layer].register_forward_pre_hook(lambda *_: self.clock.mark("layers_start")),
            layers[-1].register_forward_hook(lambda *_: self.clock.mark("layers_end")),
        ]
        self.block.gradient = self._marked_before(self.block.gradient, "optimizer_start")  # type: ignore[method-assign]
        self.block.half_step = self._marked_after(self.block.half_step, "optimizer_end")  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        for hook in self._hooks:
            hook.remove()
        del self.block.gradient, self.block.half_step  # back to the class's methods
        self.client.forward = self._own_forward

    def step(self, forward: Forward | None = None) -> StepSample:
        """One inner step with ``forward`` (default: the client's own) as the training forward."""
        clocked = ClockedForward(forward or self._own_forward, self.clock)
        self.client.forward = clocked  # type: ignore[assignment]  # the worker only calls .loss
        self.clock.mark("start")
        x_half, metrics = self.client.half_step()
        self.clock.mark("half_step_end")
        neighbours = [(x_half.clone(), 1 / (NEIGHBOURS + 1)) for _ in range(NEIGHBOURS)]
        self.clock.mark("mix_start")
        self.client.mix(neighbours, self_weight=1 / (NEIGHBOURS + 1))
        self.clock.mark("end")
        assert clocked.batch is not None  # half_step always calls the forward
        threads = torch.get_num_threads()
        return StepSample(self._times(cpu=False, scale=1.0), self._times(cpu=True, scale=1 / threads),
                          clocked.batch, metrics["loss"])

    def _times(self, cpu: bool, scale: float) -> StepTimes:
        def between(first: str, last: str) -> float:
            return self.clock.between(first, last, cpu) * scale

        half_step = between("start", "half_step_end")
        return StepTimes({
            "forward_below": between("forward_start", "layers_start"),
            "forward_layers": between("layers_start", "layers_end"),
            "forward_head": between("layers_end", "forward_end"),
            "backward": between("forward_end", "optimizer_start"),
            "optimizer": between("optimizer_start", "optimizer_end"),
            "batch_and_bookkeeping": half_step - between("forward_start", "optimizer_end"),
            "mix": between("mix_start", "end"),
        }, half_step)

    def _marked_before(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        def marked(*args: Any, **kwargs: Any) -> Any:
            self.clock.mark(name)
            return method(*args, **kwargs)
        return marked

    def _marked_after(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        def marked(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            self.clock.mark(name)
            return result
        return marked
