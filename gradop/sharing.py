"""Work that generate calls with the same prompt, seed and sampling knobs share (Compare all).

text2img, GradOP's first pass and GradOP+'s steps up to its window all walk the same text-only
DDIM trajectory from the same seeded noise. A `SharedPasses` object passed to several calls
records that trajectory (the latents after each sampling step and the generator's state there)
and lets a later call start from the furthest recorded step instead of redoing it: after
text2img, GradOP's first pass costs nothing and GradOP+ starts at its window; in any order,
each step of the trajectory is computed once. The results are the same, pixel for pixel, as
separate calls (tests/test_sharing.py).

A resumed call is the same diffusers pipeline, started from the recorded latents, with its
first steps skipped through diffusers' own per-step `interrupt` check.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Snapshot:
    step: int  # 0-based sampling step after which these latents were taken
    latents: torch.Tensor
    generator_state: torch.Tensor


class Trajectory:
    """The recorded steps of one text-only trajectory."""

    def __init__(self):
        self._steps: dict[int, Snapshot] = {}

    def record(self, step: int, latents: torch.Tensor, generator: torch.Generator) -> None:
        if step not in self._steps:
            self._steps[step] = Snapshot(step, latents.detach().clone(), generator.get_state())

    def latest(self, up_to: int) -> Snapshot | None:
        """The furthest recorded step at or before `up_to`, if any."""
        steps = [step for step in self._steps if step <= up_to]
        return self._steps[max(steps)] if steps else None

    def resume(self, snapshot: Snapshot, generator: torch.Generator) -> torch.Tensor:
        """Put the generator where it was at the snapshot; the latents to start from."""
        generator.set_state(snapshot.generator_state)
        return snapshot.latents.clone()


class SharedPasses:
    """Pass one to every `generate` call of a comparison (`GradopPipeline.compare` does)."""

    def __init__(self):
        self._trajectories: dict[str, Trajectory] = {}
        self._lock = threading.Lock()

    def trajectory(self, *decides) -> Trajectory:
        """The trajectory of everything that decides it (model, prompt, sampling knobs, regions,
        the generator's starting state)."""
        key = hashlib.sha256(json.dumps(decides, sort_keys=True, default=repr).encode()).hexdigest()
        with self._lock:
            return self._trajectories.setdefault(key, Trajectory())


@functools.cache
def skipping(pipeline_class):
    """`pipeline_class` (a diffusers SD pipeline) that skips its first `skip_steps` denoising
    steps: diffusers reads `interrupt` once at the top of every step and skips it while True."""

    class Skipping(pipeline_class):
        skip_steps = 0

        @property
        def interrupt(self):
            self._steps_checked = getattr(self, "_steps_checked", 0) + 1
            return self._interrupt or self._steps_checked <= self.skip_steps

    Skipping.__name__ = Skipping.__qualname__ = f"Skipping{pipeline_class.__name__}"
    return Skipping
