"""Generation jobs for the web app: one long-lived worker thread per model, progress and live
previews for the page to poll, cancelling, time estimates, one-line failure messages, and the
tab's history.

Nothing here imports Streamlit (tests/test_jobs.py drives it directly). A model's worker runs the
jobs of every tab one after another (the pipeline's own lock would serialise them anyway).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from gradop.guidance import guidance_window, shared_prefix
from gradop.metadata import png_bytes
from gradop.options import METHOD_OPTIONS, SamplingOptions
from gradop.results import GenerationCancelled, Progress

log = logging.getLogger(__name__)
# A job whose browser session has been gone this long is cancelled (a reload or a closed tab);
# shorter gaps are network blips, after which the session reconnects and collects its job.
ORPHAN_GRACE_S = 10.0
ABANDONED = "Generation cancelled: its browser tab was closed or reloaded."

# ----------------------------------------------------------------------------- messages and estimates

def is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_types = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))
    if isinstance(error, oom_types):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def user_message(error: BaseException) -> str:
    """One line for the page about a failure; unexpected ones are logged with their traceback."""
    if isinstance(error, GenerationCancelled):
        return "Generation cancelled."
    if is_out_of_memory(error):
        return ("Out of memory: choose a smaller canvas size (256 px), fewer images, or fewer gradient "
                "steps in the advanced settings, then try again.")
    if isinstance(error, ValueError):  # gradop's user errors, ModelLoadError included
        text = str(error).strip().splitlines()
        return text[0] if text else error.__class__.__name__
    log.error("generation failed", exc_info=error)
    # Only the error's kind: its text may hold server paths; the traceback is in the server log.
    return (f"Generation failed ({error.__class__.__name__}); try again or lower the settings. "
            "The details are in the server's log.")


# Measured on a 2-core CPU with Stable Diffusion 1.5 at 512 px, fp32 (see shared/STACK.md):
# seconds for one UNet forward of a CFG batch of 2, one VAE decode, one decode + backward.
_SD_UNET_PARAMS, _SD_DECODER_PARAMS = 860e6, 49.5e6
_CPU_UNET_S, _CPU_DECODE_S, _CPU_DECODE_BACKWARD_S = 7.25, 8.8, 21.4
# Decode + backward work of each guidance decoder relative to the full VAE's: "vae-half" decodes a
# quarter of the pixels; "linear", "conv" and "tiny" are small next to SD's decoder (at SD size on
# this CPU GradOP+ with "linear" cost 1.07x text2img against 2.97x with "vae"), so the floor below
# stands for them.
_DECODER_WORK = {"vae": 1.0, "vae-half": 0.25, "linear": 0.0, "conv": 0.0, "tiny": 0.0}
_calibration: dict[str, float] = {}  # model name -> measured / estimated, learnt from finished jobs
_param_counts: dict[int, tuple[int, int]] = {}


def _model_size(pipeline) -> tuple[int, int]:
    key = id(pipeline)
    if key not in _param_counts:
        unet = sum(p.numel() for p in pipeline.unet.parameters())
        decoder = sum(p.numel() for p in pipeline.vae.decoder.parameters())
        _param_counts[key] = (unet, decoder)
    return _param_counts[key]


def estimate_seconds(pipeline, method: str, settings: dict, shared_steps: int = 0) -> float:
    """Expected CPU seconds for one generate call (rough; corrected by earlier jobs' timings).
    `shared_steps`: leading text-only sampling steps an earlier call of the job already computed
    (gradop.sharing), which this call skips."""
    unet_params, decoder_params = _model_size(pipeline)
    knobs = _knobs(method, settings)
    side = knobs["height"] or pipeline.default_size
    area = (side / 512) ** 2 * knobs["num_images"]
    cfg = 1.0 if knobs["guidance_scale"] > 1 else 0.5
    # Small models are bound by per-operation overhead, not arithmetic: hence the floors.
    unet = max(_CPU_UNET_S * area * cfg * unet_params / _SD_UNET_PARAMS, 0.02)
    decode = max(_CPU_DECODE_S * area * decoder_params / _SD_DECODER_PARAMS, 0.02)
    work = _DECODER_WORK[knobs.get("guidance_decoder", "vae")]
    backward = max(_CPU_DECODE_BACKWARD_S * area * decoder_params / _SD_DECODER_PARAMS * work, 0.05)
    steps = knobs["steps"]
    denoise = min(int(steps * knobs.get("strength", 1.0)), steps)
    skipped = min(shared_steps, _skippable_steps(method, knobs))
    if method == "text":
        total = (steps - skipped) * unet + decode
    elif method == "sdedit":
        total = denoise * unet + 2 * decode  # encode ~ decode
    elif method == "gradop+":
        window = guidance_window(steps, knobs["strength"], knobs["iterations"])
        # "denoised" differentiates through the UNet too: its forward and backward (~2 forwards).
        through_unet = 3 * unet if knobs["guidance_latent"] == "denoised" else 0.0
        total = (steps - skipped) * unet + len(window) * knobs["grad_steps"] * (backward + through_unet) + decode
    else:  # gradop: text sample, optimisation, img2img
        total = (steps - skipped + denoise) * unet + knobs["opt_steps"] * backward + 3 * decode
    return total * 1.1 * _calibration.get(pipeline.model_name, 1.0)  # + live previews


def _knobs(method: str, settings: dict) -> dict:
    """A call's settings over the library's defaults for its method (one source of defaults)."""
    return {**SamplingOptions.defaults(), **METHOD_OPTIONS[method].defaults(), **settings}


def _text_only_steps(method: str, knobs: dict) -> int:
    """How many leading steps of the shared text-only trajectory a call walks (gradop.sharing)."""
    if method in ("text", "gradop"):  # text2img; GradOP's first pass
        return knobs["steps"]
    if method == "gradop+":  # up to and including its window's first step
        return min(guidance_window(knobs["steps"], knobs["strength"], knobs["iterations"]).start + 1, knobs["steps"])
    return 0  # SDEdit starts from the strokes


def _skippable_steps(method: str, knobs: dict) -> int:
    """How many of those steps a call can take from an earlier call instead of computing them."""
    if method == "gradop+":
        window = guidance_window(knobs["steps"], knobs["strength"], knobs["iterations"])
        return min(shared_prefix(window, knobs["guidance_latent"]), knobs["steps"])
    return _text_only_steps(method, knobs)


# What decides the text-only trajectory (gradop.pipeline passes the same to SharedPasses).
_TRAJECTORY_KNOBS = ("prompt", "negative_prompt", "seed", "regions", *SamplingOptions.names())


def estimate_runs(pipeline, runs: list["Run"]) -> list[float]:
    """Expected seconds of each run of a job, in order: like a job (and `GradopPipeline.compare`),
    a run skips the text-only steps an earlier run of the same prompt, seed and sampling knobs
    computed (Compare all: text-only after GradOP costs one decode). Edits share nothing."""
    walked: dict[str, int] = {}
    estimates = []
    for run in runs:
        knobs = _knobs(run.method, run.kwargs)
        key = None if knobs.get("edit") or knobs.get("seed") is None else \
            repr([knobs.get(name) for name in _TRAJECTORY_KNOBS])
        shared = walked.get(key, 0) if key is not None else 0
        estimates.append(estimate_seconds(pipeline, run.method, run.kwargs, shared))
        if key is not None:
            walked[key] = max(shared, _text_only_steps(run.method, knobs))
    return estimates


def record_timing(model_name: str, estimated: float, measured: float) -> None:
    """Learn how this machine compares with the table (a running geometric mean)."""
    if estimated <= 0 or measured <= 0:
        return
    ratio = measured / estimated * _calibration.get(model_name, 1.0)
    previous = _calibration.get(model_name)
    _calibration[model_name] = ratio if previous is None else math.sqrt(previous * ratio)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {round(seconds)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------- jobs and history

@dataclass
class Output:
    """One generated image with its parameters and its PNG file (parameters in metadata)."""

    caption: str
    image: Image.Image
    params: dict
    png: bytes

    @classmethod
    def from_result(cls, label: str, result, index: int) -> "Output":
        params = result.image_params(index)
        caption = f"{label} · seed {params.get('seed')}"
        if params.get("num_images", 1) > 1:
            caption += f" · #{index + 1}"
        return cls(caption, result.images[index], params, png_bytes(result.images[index], params))

    @property
    def file_name(self) -> str:
        return f"gradop_{self.params.get('method', 'image').replace('+', 'plus')}_{self.params.get('seed')}" \
               f"_{self.params.get('image_index', 0)}.png"


class ModelWorker:
    """The thread that runs one model's jobs, in the order they were started, for as long as the
    model is loaded. One thread rather than one per job because torch keeps some state per thread:
    the CUDA graphs of a compiled UNet (`compile_unet`) live in per-thread trees, so a new thread
    per job would record them again for every job."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="gradop-worker", daemon=True)
        self.thread.start()

    def submit(self, job: "GenerationJob") -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        """End the thread once the jobs already submitted are done (the model was unloaded)."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job._work()  # reports its own failures on the page; nothing may stop this thread
            except BaseException as error:  # noqa: BLE001
                log.exception("gradop: the worker survived a failure outside a job")
                job.message, job.status = user_message(error), "failed"
                job._finished.set()
            del job  # a finished job's images belong to its tab, not to the idle worker


_workers: "weakref.WeakKeyDictionary[object, ModelWorker]" = weakref.WeakKeyDictionary()
_workers_lock = threading.Lock()


def worker_for(pipeline) -> ModelWorker:
    """The worker thread of this pipeline (created on first use; it idles when there is no job)."""
    with _workers_lock:
        if pipeline not in _workers:
            worker = _workers[pipeline] = ModelWorker()
            weakref.finalize(pipeline, worker.stop)
        return _workers[pipeline]


@dataclass
class Run:
    """One `generate` call of a job: the label shown, the method and its keyword arguments."""

    label: str
    method: str
    kwargs: dict


class GenerationJob:
    """Runs `pipeline.generate` for each run on the model's worker thread; the page polls its state."""

    # Live previews are decoded on the worker thread only when the page has asked for one since
    # the last (request_preview, once per poll): a preview nobody sees is wasted work. The share
    # caps them where a decode is slow (SD's VAE on a CPU).
    PREVIEW_SHARE = 0.1

    def __init__(self, pipeline, runs: list[Run], *, estimates: list[float] | None = None, meta: dict | None = None,
                 alive: Callable[[], bool] | None = None, orphan_grace: float = ORPHAN_GRACE_S,
                 threads: int | None = None):
        """`estimates`: each run's expected seconds (estimate_runs), for `seconds_left` and to
        calibrate later estimates. `alive` tells whether the session that started the job is
        still there; when it has been gone for `orphan_grace` seconds the job cancels itself, so
        that it neither runs for nobody nor keeps other sessions waiting for the model.
        `threads`: torch's CPU threads, set on the worker thread before it generates (None: leave
        torch's setting)."""
        self.pipeline, self.runs, self.estimates, self.threads = pipeline, runs, estimates, threads
        self._alive, self._orphan_grace, self._gone_since = alive, orphan_grace, None
        self.abandoned = False
        self.meta = meta or {}  # whatever the caller wants back with the results (page settings)
        self.status = "waiting"  # waiting -> running -> done | cancelled | failed
        self.message: str | None = None
        self.outputs: list[Output] = []
        self.losses: list[float] = []
        self.preview: Image.Image | None = None
        self.run_index, self.step, self.total, self.phase = 0, 0, 1, ""
        self.started = time.monotonic()
        self.elapsed: float | None = None
        self._run_started = self._work_started = self.started
        self._preview_seconds = 0.0
        self._preview_wanted = threading.Event()
        self._preview_wanted.set()  # the first preview as soon as there are latents
        self._cancel = threading.Event()
        self._finished = threading.Event()

    def start(self) -> "GenerationJob":
        worker_for(self.pipeline).submit(self)
        return self

    def request_preview(self) -> None:
        """The page shows a preview: decode one at the next step (at most one per request)."""
        self._preview_wanted.set()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set() and not self.finished

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled", "failed")

    def wait(self, timeout: float | None = None) -> bool:
        self._finished.wait(timeout)
        return self.finished

    @property
    def fraction(self) -> float:
        return min(1.0, (self.run_index + self.step / max(self.total, 1)) / max(len(self.runs), 1))

    def seconds_left(self) -> float:
        """Time to the end (0 when finished): the current run's, extrapolated from its own
        progress, plus the later runs' estimates (runs differ too much in cost to extrapolate
        across them); with estimates, also their remainder, scaled by how this job's finished runs
        compared with theirs, whichever is less (the page waits for the end when it is near).
        inf where neither tells."""
        if self.finished:
            return 0.0
        now, index = time.monotonic(), self.run_index
        scale = 1.0
        if self.estimates and index > 0:  # this machine against the estimates, on this job's finished runs
            scale = (self._run_started - self._work_started) / max(sum(self.estimates[:index]), 1e-9)
        later = scale * sum(self.estimates[index + 1:]) if self.estimates else \
            (0.0 if index == len(self.runs) - 1 else math.inf)
        done = self.step / max(self.total, 1)
        from_progress = (now - self._run_started) * (1 - done) / done + later if done > 0 else math.inf
        if not self.estimates:
            return from_progress
        from_estimates = max(0.0, scale * self.estimates[index] - (now - self._run_started)) + later
        return min(from_progress, from_estimates)

    def describe(self) -> str:
        if self.status == "waiting":
            return "Waiting for the model: another generation is running."
        run = self.runs[min(self.run_index, len(self.runs) - 1)]
        where = f" ({self.run_index + 1}/{len(self.runs)})" if len(self.runs) > 1 else ""
        return f"{run.label}{where}: {self.phase} step {self.step}/{self.total}"

    def _check_owner(self) -> None:
        """Cancel when the owner's session has been gone for the grace period."""
        if self._alive is None or self._alive():
            self._gone_since = None
            return
        now = time.monotonic()
        self._gone_since = self._gone_since or now
        if now - self._gone_since >= self._orphan_grace:
            self.abandoned = True
            self._cancel.set()

    def _on_progress(self, progress: Progress) -> None:
        self._check_owner()
        if self._cancel.is_set():
            raise GenerationCancelled()
        self.status = "running"
        self.step, self.total, self.phase = progress.step, progress.total, progress.phase
        elapsed = time.monotonic() - self.started
        if (progress.latents is not None and self._preview_wanted.is_set()
                and self._preview_seconds <= self.PREVIEW_SHARE * elapsed):
            self._preview_wanted.clear()
            began = time.monotonic()
            self.preview = self.pipeline.preview(progress.latents)
            self._preview_seconds += time.monotonic() - began

    def _work(self) -> None:
        from gradop.sharing import SharedPasses

        shared = SharedPasses()  # runs with the same prompt and seed compute their common text-only steps once
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            self._work_started = time.monotonic()
            for index, run in enumerate(self.runs):
                self.run_index, self.step, self._run_started = index, 0, time.monotonic()
                self._check_owner()
                if self._cancel.is_set():
                    raise GenerationCancelled()
                result = self.pipeline.generate(run.method, callback=self._on_progress, shared=shared, **run.kwargs)
                self.outputs += [Output.from_result(run.label, result, i) for i in range(len(result.images))]
                self.losses += result.losses
            self.status = "done"
        except GenerationCancelled as error:
            self.message, self.status = ABANDONED if self.abandoned else user_message(error), "cancelled"
            if self.abandoned:
                log.warning("gradop: %s", ABANDONED)  # for the operator: the model was freed
        except BaseException as error:  # noqa: BLE001 - every failure becomes a message on the page
            self.message, self.status = user_message(error), "failed"
        finally:
            self.elapsed = time.monotonic() - self.started
            try:
                log.info("generation %s: %s in %.2f s", self.status, ", ".join(run.method for run in self.runs),
                         self.elapsed)  # the operator's record; bench/bench_app.py reads it
                if self.status == "done" and self.estimates:
                    record_timing(self.pipeline.model_name, sum(self.estimates), self.elapsed)
            finally:
                self._finished.set()


@dataclass
class HistoryEntry:
    """One finished job of this browser tab: its outputs and the page settings that made it."""

    number: int
    settings: dict
    outputs: list[Output]
    drawing: dict | None = None  # the canvas's Fabric JSON, to restore the strokes on the canvas
    strokes: Image.Image | None = None  # their pixels, until the restored canvas reports its own
    background: Image.Image | None = None  # the photo or result they were painted over
    created: float = field(default_factory=time.time)

    @property
    def title(self) -> str:
        prompt = self.settings.get("prompt", "")
        short = prompt if len(prompt) <= 48 else prompt[:47] + "…"
        return f"#{self.number} · {self.settings.get('method', '?')} · seed {self.settings.get('seed')} · {short}"


def add_to_history(history: list[HistoryEntry], entry: HistoryEntry, limit: int = 12) -> list[HistoryEntry]:
    """Newest first, at most `limit` entries (each holds images in the tab's memory)."""
    return [entry, *history][:limit]
