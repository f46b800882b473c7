"""gradop.jobs: generation jobs on worker threads, estimates, messages and history."""

import math
import re
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST

from gradop import jobs
from gradop.decoders import GUIDANCE_DECODERS
from gradop.jobs import GenerationJob, Run
from gradop.metadata import read_params
from gradop.pipeline import GenerationResult, Progress


# ----------------------------------------------------------------------------- messages and estimates


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory"), MemoryError(),
     RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried")],
)
def test_out_of_memory_message_names_the_knobs(error):
    message = jobs.user_message(error)
    assert message.startswith("Out of memory") and "canvas size" in message


def test_user_messages_are_one_line():
    from gradop.models import ModelLoadError
    from gradop.pipeline import GenerationCancelled

    assert jobs.user_message(ValueError("the prompt is empty\ndetails")) == "the prompt is empty"
    assert jobs.user_message(ModelLoadError("model 'x' is not in the cache")) == "model 'x' is not in the cache"
    assert jobs.user_message(GenerationCancelled()) == "Generation cancelled."
    unexpected = jobs.user_message(FileNotFoundError(2, "No such file", "/srv/gradop/cache/x.bin"))
    assert unexpected.startswith("Generation failed (FileNotFoundError)") and "\n" not in unexpected
    assert "/srv" not in unexpected  # no server paths on the page


def test_cpu_estimate_grows_with_work_and_learns(tiny_pipe, monkeypatch):
    monkeypatch.setattr(jobs, "_calibration", {})  # forget what earlier tests measured
    base = dict(height=64, steps=10, iterations=3, grad_steps=12, strength=0.8)
    text = jobs.estimate_seconds(tiny_pipe, "text", base)
    plus = jobs.estimate_seconds(tiny_pipe, "gradop+", base)
    assert 0 < text < plus
    assert jobs.estimate_seconds(tiny_pipe, "text", base | {"steps": 20}) > text
    assert jobs.estimate_seconds(tiny_pipe, "gradop", base) > 0
    assert jobs.estimate_seconds(tiny_pipe, "sdedit", base) < text
    jobs.record_timing(tiny_pipe.model_name, text, 4 * text)
    assert jobs.estimate_seconds(tiny_pipe, "text", base) == pytest.approx(4 * text)
    assert jobs.format_duration(0.2) == "under a second"
    assert jobs.format_duration(42) == "about 42 s"
    assert jobs.format_duration(600) == "about 10 min"


def test_cpu_estimate_follows_the_guidance_decoder(tiny_pipe, monkeypatch):
    monkeypatch.setattr(jobs, "_calibration", {})
    monkeypatch.setattr(jobs, "_model_size", lambda pipeline: (860e6, 49.5e6))  # SD 1.5's UNet and decoder
    base = dict(height=512, steps=50)
    text = jobs.estimate_seconds(tiny_pipe, "text", base)
    extra = {d: jobs.estimate_seconds(tiny_pipe, "gradop+", base | {"guidance_decoder": d}) - text
             for d in GUIDANCE_DECODERS}  # every decoder the app offers has an estimate
    assert extra["vae"] == pytest.approx(4 * extra["vae-half"], rel=1e-3)  # a quarter of the pixels
    assert 0 < extra["linear"] < extra["vae-half"] / 50  # only the floor per Adam step
    assert jobs.estimate_seconds(tiny_pipe, "gradop", base | {"guidance_decoder": "vae-half"}) < \
        jobs.estimate_seconds(tiny_pipe, "gradop", base)


@pytest.mark.parametrize("order, latent", [(("gradop+", "gradop", "sdedit", "text"), "noisy"),
                                           (("text", "sdedit", "gradop", "gradop+"), "noisy"),
                                           (("text", "gradop+"), "x0")])
def test_job_estimates_count_the_unet_steps_that_shared_calls_make(tiny_pipe, strokes, monkeypatch, order, latent):
    """With a UNet so large that it is all the estimate counts, each run's estimate is its UNet
    steps: Compare all's runs skip the text-only steps an earlier run computed (gradop.sharing);
    GradOP+ with the x0 latent recomputes its window's first step (it needs that step's x0)."""
    from gradop.sharing import SharedPasses

    monkeypatch.setattr(jobs, "_calibration", {})
    monkeypatch.setattr(jobs, "_model_size", lambda pipeline: (1e15, 1.0))
    knobs = dict(FAST, prompt="a red hut", seed=3, iterations=2, grad_steps=2, opt_steps=2, guidance_decoder="linear",
                 guidance_latent=latent)
    runs = [Run(m, m, knobs) for m in order]
    unet_step = jobs.estimate_seconds(tiny_pipe, "text", knobs) / FAST["steps"]
    counted = []
    handle = tiny_pipe.unet.register_forward_hook(lambda *_: counted[-1].append(1))
    try:
        shared = SharedPasses()
        for method in order:
            counted.append([])
            tiny_pipe.generate(method, strokes=strokes, shared=shared, **knobs)
    finally:
        handle.remove()
    estimated = [round(seconds / unet_step) for seconds in jobs.estimate_runs(tiny_pipe, runs)]
    assert estimated == [len(c) for c in counted]
    assert estimated != [round(jobs.estimate_seconds(tiny_pipe, m, knobs) / unet_step) for m in order]
    other_seed = [Run(m, m, dict(knobs, seed=4 + i)) for i, m in enumerate(order)]  # nothing shared
    assert jobs.estimate_runs(tiny_pipe, other_seed) == [jobs.estimate_seconds(tiny_pipe, m, knobs) for m in order]
    edits = [Run(m, m, dict(knobs, edit=True)) for m in order]
    assert jobs.estimate_runs(tiny_pipe, edits) == [jobs.estimate_seconds(tiny_pipe, m, knobs) for m in order]


# ----------------------------------------------------------------------------- jobs


class FakePipeline:
    """generate() that reports progress with latents, optionally blocking or failing."""

    model_name = "fake"

    def __init__(self, steps=5, error=None, gate=None):
        self.steps, self.error, self.gate, self.previews, self.calls = steps, error, gate, 0, []

    def preview(self, latents):
        self.previews += 1
        return Image.new("RGB", (8, 8), "gray")

    def generate(self, method, prompt, strokes=None, *, callback=None, seed=0, **kwargs):
        self.calls.append(method)
        for step in range(1, self.steps + 1):
            if self.gate is not None:
                self.gate.wait()
            callback(Progress("sampling", step, self.steps, torch.zeros(1, 4, 1, 1)))
        if self.error:
            raise self.error
        params = dict(method=method, prompt=prompt, seed=seed, num_images=1)
        return GenerationResult([Image.new("RGB", (8, 8), "white")], params)


def test_job_runs_every_method_and_keeps_pngs_with_metadata():
    pipeline = FakePipeline()
    runs = [Run("GradOP+", "gradop+", dict(prompt="p", seed=5)), Run("Text only", "text", dict(prompt="p", seed=5))]
    job = GenerationJob(pipeline, runs, estimates=[0.6, 0.4], meta={"x": 1}).start()
    assert job.wait(30) and job.status == "done" and job.message is None
    assert pipeline.calls == ["gradop+", "text"] and job.fraction == 1.0 and job.meta == {"x": 1}
    assert [o.caption for o in job.outputs] == ["GradOP+ · seed 5", "Text only · seed 5"]
    assert read_params(job.outputs[0].png)["method"] == "gradop+"
    assert job.outputs[0].file_name == "gradop_gradopplus_5_0.png"
    assert job.preview is not None and pipeline.previews >= 1


def test_job_sets_torch_threads_on_its_worker_thread():
    seen = []

    class Recording(FakePipeline):
        def generate(self, *args, **kwargs):
            seen.append(torch.get_num_threads())
            return super().generate(*args, **kwargs)

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    try:
        job = GenerationJob(Recording(steps=1), [Run("A", "text", {"prompt": "p"})], threads=wanted).start()
        assert job.wait(30) and job.status == "done"
        assert seen == [wanted]
    finally:
        torch.set_num_threads(before)


def test_a_models_jobs_run_one_after_another_on_one_long_lived_thread():
    # torch keeps per-thread state that is costly to rebuild (a compiled UNet's CUDA graphs), so
    # every job of one model runs on the same worker thread; another model has its own.
    class Recording(FakePipeline):
        def generate(self, *args, **kwargs):
            self.threads.append(threading.get_ident())
            return super().generate(*args, **kwargs)

    model, other_model = Recording(steps=2), Recording(steps=2)
    model.threads, other_model.threads = [], []  # per model: the last two jobs run side by side
    first = GenerationJob(model, [Run("A", "text", {"prompt": "p"}), Run("B", "gradop+", {"prompt": "p"})]).start()
    second = GenerationJob(model, [Run("C", "text", {"prompt": "q"})]).start()
    assert first.wait(30) and second.wait(30) and first.status == second.status == "done"
    later = GenerationJob(model, [Run("D", "text", {"prompt": "r"})]).start()  # after the worker went idle
    elsewhere = GenerationJob(other_model, [Run("E", "text", {"prompt": "s"})]).start()
    assert later.wait(30) and elsewhere.wait(30)
    assert model.calls == ["text", "gradop+", "text", "text"]  # in the order they were started
    assert len(model.threads) == 4 and len(set(model.threads)) == 1 and model.threads[0] != threading.get_ident()
    assert other_model.threads[0] != model.threads[0]


def test_an_unloaded_models_worker_thread_ends():
    import gc

    model = FakePipeline(steps=1)
    job = GenerationJob(model, [Run("A", "text", {"prompt": "p"})]).start()
    assert job.wait(30)
    thread = jobs.worker_for(model).thread
    del model, job
    gc.collect()
    thread.join(30)
    assert not thread.is_alive()


def test_the_worker_survives_a_failed_job():
    model = FakePipeline(steps=1, error=RuntimeError("boom"))
    failed = GenerationJob(model, [Run("A", "text", {"prompt": "p"})]).start()
    assert failed.wait(30) and failed.status == "failed" and "RuntimeError" in failed.message
    model.error = None
    after = GenerationJob(model, [Run("B", "text", {"prompt": "p"})]).start()
    assert after.wait(30) and after.status == "done"


class Steps:
    """A FakePipeline gate: the pipeline takes one step per release."""

    def __init__(self):
        self._steps = threading.Semaphore(0)

    def wait(self):
        self._steps.acquire()

    def release(self, n):
        self._steps.release(n)


def two_gated_runs(estimates=None) -> tuple[GenerationJob, Steps]:
    """A job of two runs of 4 steps each, which take a step only when the test releases one."""
    steps = Steps()
    runs = [Run("A", "gradop+", {"prompt": "p"}), Run("B", "text", {"prompt": "p"})]
    return GenerationJob(FakePipeline(steps=4, gate=steps), runs, estimates=estimates).start(), steps


def reach(job: GenerationJob, run_and_step: tuple[int, int]) -> None:
    deadline = time.monotonic() + 30
    while (job.run_index, job.step) != run_and_step and time.monotonic() < deadline:
        time.sleep(0.01)


def test_seconds_left_extrapolates_from_the_last_runs_progress():
    job, steps = two_gated_runs()
    assert job.seconds_left() == math.inf  # no progress yet: nothing to extrapolate from
    steps.release(3)
    reach(job, (0, 3))
    assert job.seconds_left() == math.inf  # another run follows, whose cost this one does not tell
    steps.release(3)
    reach(job, (1, 2))
    run_started = job._run_started
    left = job.seconds_left()
    assert 0 < left <= time.monotonic() - run_started  # the last run half done: as long again
    steps.release(2)
    assert job.wait(30) and job.seconds_left() == 0.0


def test_seconds_left_counts_the_later_runs_estimates_scaled_by_the_finished_ones():
    job, steps = two_gated_runs(estimates=[30.0, 10.0])
    assert 10.0 < job.seconds_left() <= 40.0  # no progress yet: the estimates tell
    steps.release(2)
    reach(job, (0, 2))
    assert 10.0 <= job.seconds_left() < 40.0  # half of A, then all of B
    steps.release(2 + 1)
    reach(job, (1, 1))
    a_took = job._run_started - job._work_started
    assert job.seconds_left() <= 10.0 * a_took / 30.0  # B is a third of A, as estimated
    steps.release(3)
    assert job.wait(30) and job.seconds_left() == 0.0


def test_a_finished_job_logs_its_runs_and_seconds_for_the_operator(caplog):
    caplog.set_level("INFO", logger="gradop.jobs")
    runs = [Run("A", "gradop+", {"prompt": "p"}), Run("B", "text", {"prompt": "p"})]
    job = GenerationJob(FakePipeline(steps=1), runs).start()
    assert job.wait(30)
    # bench/bench_app.py reads this line from the server's log
    assert re.search(r"generation done: gradop\+, text in ([0-9.]+) s", caplog.text)
    assert float(re.search(r"in ([0-9.]+) s", caplog.text).group(1)) == round(job.elapsed, 2)


def test_job_failure_becomes_a_message():
    job = GenerationJob(FakePipeline(error=torch.OutOfMemoryError("out of memory")), [Run("A", "text", {"prompt": "p"})]).start()
    assert job.wait(30) and job.status == "failed" and job.message.startswith("Out of memory")


def test_cancel_stops_the_job_at_the_next_step():
    gate = threading.Event()
    pipeline = FakePipeline(steps=1000, gate=gate)
    job = GenerationJob(pipeline, [Run("A", "text", {"prompt": "p"}), Run("B", "sdedit", {"prompt": "p"})]).start()
    assert job.status == "waiting" and "Waiting" in job.describe()
    deadline = time.monotonic() + 30
    while not pipeline.calls and time.monotonic() < deadline:  # the worker is inside the first run
        time.sleep(0.01)
    job.cancel()
    assert job.cancelling
    gate.set()
    assert job.wait(30) and job.status == "cancelled" and job.message == "Generation cancelled."
    assert pipeline.calls == ["text"] and not job.outputs and not job.cancelling


def test_history_keeps_the_newest_entries_first():
    history = []
    for number in range(1, 16):
        history = jobs.add_to_history(history, jobs.HistoryEntry(number, {"prompt": "p", "seed": number}, []))
    assert [e.number for e in history] == list(range(15, 3, -1))
    assert history[0].title.startswith("#15 · ? · seed 15 · p")


def test_two_jobs_on_one_pipeline_at_once_give_their_own_images(tiny_pipe):
    # Two browser tabs: the pipeline's lock serialises them; each gets exactly its own result.
    kwargs = [dict(prompt="a red fox", steps=2, seed=1), dict(prompt="a blue lake", steps=2, seed=2)]
    expected = [np.asarray(tiny_pipe.generate("text", **k).images[0]) for k in kwargs]
    jobs = [GenerationJob(tiny_pipe, [Run("Text only", "text", k)]) for k in kwargs]
    for job in jobs:
        job.start()
    for job, image in zip(jobs, expected):
        assert job.wait(120) and job.status == "done", job.message
        assert np.array_equal(np.asarray(job.outputs[0].image), image)


class LockedPipeline(FakePipeline):
    """One model for every tab: generate() holds a lock, like GradopPipeline, and sleeps per step."""

    def __init__(self, steps, step_seconds=0.005):
        super().__init__(steps=steps)
        self.lock, self.step_seconds = threading.Lock(), step_seconds

    def generate(self, *args, callback=None, **kwargs):
        with self.lock:
            def slow(progress):
                time.sleep(self.step_seconds)
                callback(progress)

            return super().generate(*args, callback=slow, **kwargs)


def test_a_job_whose_tab_closed_is_cancelled_and_frees_the_model_for_other_tabs():
    pipeline = LockedPipeline(steps=100_000)  # ~10 minutes unless cancelled
    tab_open = threading.Event()
    tab_open.set()
    orphan = GenerationJob(pipeline, [Run("A", "text", {"prompt": "p"})], alive=tab_open.is_set,
                           orphan_grace=0.2).start()
    while orphan.status != "running":
        time.sleep(0.01)
    other = GenerationJob(LockedPipelineView(pipeline, steps=3), [Run("B", "text", {"prompt": "q"})],
                          alive=lambda: True).start()
    assert other.status == "waiting"  # behind the orphan, for the model
    tab_open.clear()  # the tab is closed
    assert orphan.wait(60) and orphan.status == "cancelled" and orphan.abandoned
    assert orphan.message == jobs.ABANDONED and not orphan.outputs
    assert other.wait(60) and other.status == "done" and len(other.outputs) == 1


class LockedPipelineView(LockedPipeline):
    """Another tab's view of the same model: shares its lock, has its own step count."""

    def __init__(self, shared: LockedPipeline, steps: int):
        super().__init__(steps=steps)
        self.lock = shared.lock


def test_a_short_disconnect_does_not_cancel_the_job():
    pipeline = LockedPipeline(steps=40, step_seconds=0.01)
    answers = iter([True] * 5 + [False] * 5)  # the connection drops for five steps, then returns

    job = GenerationJob(pipeline, [Run("A", "text", {"prompt": "p"})], alive=lambda: next(answers, True),
                        orphan_grace=30).start()
    assert job.wait(60) and job.status == "done" and not job.abandoned


def test_previews_are_decoded_only_when_the_page_asks():
    steps = Steps()
    pipeline = FakePipeline(steps=6, gate=steps)
    job = GenerationJob(pipeline, [Run("A", "text", {"prompt": "p"})])
    job.PREVIEW_SHARE = float("inf")  # no time cap: only the page's requests decide
    job.start()
    steps.release(3)  # three steps, no request: only the first preview
    deadline = time.monotonic() + 30
    while job.step < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.step == 3 and pipeline.previews == 1
    job.request_preview()
    steps.release(3)
    assert job.wait(30) and job.status == "done" and pipeline.previews == 2
