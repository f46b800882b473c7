"""Time the web app's "Compare all" against the same calls made through the library.

Starts the app with the README's own command (`.venv/bin/streamlit run app.py`, plus only
`--server.headless/address/port`, which run it unattended on a free local port; the project's
`.streamlit/config.toml` applies as it does for a user), drives it with Debian's Chromium via
Playwright (as tests/test_e2e_browser.py does): paints two strokes, writes a prompt, picks
"Compare all", and times the Generate click until the page says "Done" (in the page, by a click
listener and a MutationObserver; the later moment Playwright's polling saw it is printed beside
it). It then downloads the four PNGs, stops the server, and makes the same four `generate` calls
(the parameters read back from those PNGs) through the library, without a server, and prints the
ratio.

    python bench/bench_app.py                          # the embedded demo model, default knobs
    python bench/bench_app.py --quick --screenshot test-artifacts/app-demo.png   # also the README's picture
    python bench/bench_app.py --server-args "--runner.postScriptGC true --server.fileWatcherType auto"
                                                       # Streamlit's own defaults, for comparison

The library side is timed twice (before and after the app, on the same machine) and the ratio
uses their mean. Also printed, last: the same calls through gradop.jobs.GenerationJob (the app's
worker thread with its live previews, but no server). In this process that is torch's second
thread, on which this 2-core CPU ran the demo model's small ops at about one core's speed, so
that line is an upper bound; in the server the worker is the only thread that generates. A
benchmark, not a test: numbers vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WATER, RED = "#2f6fd0", "#d83a3a"
PROMPT = "a red hut beside a lake under a sunset sky"
LIBRARY_ONLY_KEYS = ("method", "model", "gradop_version", "strokes_sha256", "image_index", "regions")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def streamlit_command(port: int, server_args: str, app_args: list[str]) -> list[str]:
    """The README's command (`.venv/bin/streamlit run app.py`) on a local port, without a browser tab."""
    script = Path(sys.executable).with_name("streamlit")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "streamlit"]
    command = head + ["run", "app.py", "--server.headless", "true", "--server.address", "127.0.0.1",
                      "--server.port", str(port), *shlex.split(server_args)]
    return command + (["--", *app_args] if app_args else [])


def start_server(command: list[str], port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    for name in ("GRADOP_MODEL", "GRADOP_ALLOWED_MODELS", "GRADOP_CONFIG"):
        env.pop(name, None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_idle(page) -> None:
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.locator("[data-testid='stStatusWidget']")).to_have_count(0, timeout=600_000)


def stroke(page, points: list[tuple[float, float]]) -> None:
    canvas = page.locator("canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU seconds (user + system, all threads) used so far by a process: this one by default."""
    if pid is None:
        return time.process_time()
    try:
        import psutil
    except ImportError:  # optional: only the CPU-time lines need it
        return None
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def browser_cpu_seconds() -> float | None:
    """CPU seconds used so far by every Chromium process on the machine (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if "chrom" in (process.info["name"] or "") and process.info["cpu_times"] is not None:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def time_app(url: str, workdir: Path, timeout_s: float, server_pid: int,
             screenshot: Path | None = None) -> tuple[float, float | None, list[dict], Path]:
    """Seconds from the Generate click to "Done", the server's CPU seconds in that time, the four
    PNGs' parameters, and the strokes drawn; `screenshot`: where to save the finished page."""
    from playwright.sync_api import sync_playwright

    from gradop.metadata import read_params

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no system Chromium: apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport={"width": 1600, "height": 1100}, accept_downloads=True).new_page()
        try:
            timed = drive_compare_all(page, url, workdir, timeout_s, read_params, server_pid)
            if screenshot is not None:  # the README's picture of the app (docs/refresh_images.py)
                # Streamlit scrolls inside its own container: a whole-page shot needs a tall viewport.
                height = page.evaluate("() => document.querySelector('[data-testid=stMain]')?.scrollHeight || 0")
                page.set_viewport_size({"width": 1600, "height": max(800, min(int(height) + 40, 6000))})
                page.wait_for_timeout(500)
                page.screenshot(path=screenshot)
            return timed
        except BaseException:
            page.screenshot(path=workdir / "failure.png")
            print(f"failed; the page is in {workdir / 'failure.png'}", file=sys.stderr)
            raise
        finally:
            browser.close()


# The click and the moment "Done" enters the page, timed in the page: Playwright's expect() polls
# at growing intervals (up to a second apart), which would add its own delay to the app's time.
MARK_CLICK_AND_DONE = """() => {
    window.gradopClick = window.gradopDone = null;
    document.addEventListener("click", () => { window.gradopClick ??= performance.now(); }, true);
    const observer = new MutationObserver(() => {
        for (const alert of document.querySelectorAll("[data-testid='stAlert']")) {
            if (alert.textContent.trim().startsWith("Done in")) {
                window.gradopDone = performance.now();
                observer.disconnect();
                return;
            }
        }
    });
    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def drive_compare_all(page, url: str, workdir: Path, timeout_s: float, read_params, server_pid: int):
    from playwright.sync_api import expect

    page.goto(url)
    page.locator("canvas.upper-canvas").wait_for(timeout=timeout_s * 1000)  # the model loads first
    wait_idle(page)
    for colour, points in ((WATER, [(0.05, 0.7), (0.5, 0.74), (0.95, 0.7)]),
                           (RED, [(0.35, 0.2), (0.5, 0.25), (0.65, 0.2), (0.5, 0.32)])):
        page.locator(f".st-key-colour-{colour[1:]} button").first.click()
        wait_idle(page)
        stroke(page, points)
        wait_idle(page)
    strokes_path = workdir / "strokes.png"
    page.locator("canvas.dc-canvas.lower-canvas").screenshot(path=strokes_path)
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill(PROMPT)
    prompt.press("Control+Enter")
    wait_idle(page)
    page.get_by_text("Compare all", exact=True).click()
    wait_idle(page)
    generate = page.get_by_role("button", name="Generate", exact=True)
    page.evaluate(MARK_CLICK_AND_DONE)
    started, cpu_started, browser_started = time.perf_counter(), cpu_seconds(server_pid), browser_cpu_seconds()
    generate.click()
    expect(page.get_by_text(re.compile(r"^Done in"))).to_be_visible(timeout=timeout_s * 1000)
    polled, cpu_done, browser_done = time.perf_counter() - started, cpu_seconds(server_pid), browser_cpu_seconds()
    seconds = page.evaluate("() => (window.gradopDone - window.gradopClick) / 1000")
    if not 0 < (seconds or 0) <= polled:  # Streamlit renamed its alert, or "Done" was already there
        raise SystemExit(f"could not time Done in the page (got {seconds}); the polled time was {polled:.2f} s")
    print(f"click to Done, in the page / as polled:  {seconds:7.2f} s / {polled:.2f} s", flush=True)
    server_cpu = None if cpu_done is None else cpu_done - cpu_started
    if browser_done is not None:  # Chromium shares this machine's cores with the server
        print(f"Chromium CPU seconds during the run:     {browser_done - browser_started:7.2f} s", flush=True)
    wait_idle(page)
    params = []
    buttons = page.get_by_role("button", name="Download PNG")
    for index in range(buttons.count()):
        with page.expect_download() as download:
            buttons.nth(index).click()
        params.append(read_params(Path(download.value.path()).read_bytes()))
    return seconds, server_cpu, params, strokes_path


def server_generation_seconds(server_log: str) -> float | None:
    """The last generation's seconds from the server's log (gradop.jobs logs each one)."""
    found = re.findall(r"generation done: .* in ([0-9.]+) s", server_log)
    return float(found[-1]) if found else None


def library_calls(params: list[dict]) -> list[tuple[str, dict]]:
    """The `generate` calls that made these PNGs, from the parameters they carry."""
    calls = []
    for p in params:
        kwargs = {k: v for k, v in p.items() if k not in LIBRARY_ONLY_KEYS}
        calls.append((p["method"], kwargs))
    return calls


def time_library(pipeline, calls, strokes) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the calls made one after another in this process, sharing
    their common text-only steps as the app's job does (gradop.sharing)."""
    from gradop.sharing import SharedPasses

    shared = SharedPasses()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    for method, kwargs in calls:
        pipeline.generate(method, strokes=strokes if method != "text" else None, shared=shared, **kwargs)
    return time.perf_counter() - started, cpu_seconds() - cpu_started


def time_job(pipeline, calls, strokes) -> float:
    """The same calls on the app's worker thread with its live previews (gradop.jobs), no server."""
    from gradop import jobs

    runs = [jobs.Run(method, method, dict(kwargs, strokes=strokes if method != "text" else None))
            for method, kwargs in calls]
    job = jobs.GenerationJob(pipeline, runs).start()
    job.wait()
    worker = jobs.worker_for(pipeline)  # ended here: a worker thread still alive at exit aborts the process
    worker.stop()
    worker.thread.join()
    if job.status != "done":
        raise SystemExit(f"the job ended {job.status}: {job.message}")
    return job.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="app model (after `--`); default: the app's own default")
    parser.add_argument("--server-args", default="", help="extra streamlit flags, e.g. to compare settings")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for Done")
    parser.add_argument("--quick", action="store_true", help="one library run after the app, no GenerationJob line")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save the finished page here (docs/refresh_images.py makes it the README's picture)")
    args = parser.parse_args()

    from PIL import Image

    from gradop.pipeline import GradopPipeline

    workdir = Path(tempfile.mkdtemp(prefix="gradop-bench-app-"))
    log_path = workdir / "streamlit.log"
    port = free_port()
    command = streamlit_command(port, args.server_args, ["--model", args.model] if args.model else [])
    print("server:", shlex.join(command))
    process = start_server(command, port, log_path)
    try:
        app_seconds, app_cpu, params, strokes_path = time_app(f"http://127.0.0.1:{port}", workdir, args.timeout,
                                                              process.pid, args.screenshot)
    finally:
        stop_server(process)
    server_job = server_generation_seconds(log_path.read_text())
    if len(params) != 4:
        raise SystemExit(f"expected 4 images from Compare all, got {len(params)}; log: {log_path}")
    calls = library_calls(params)
    model = params[0]["model"]
    strokes = Image.open(strokes_path).convert("RGB")
    pipeline = GradopPipeline.from_pretrained(model)
    time_library(pipeline, [(m, dict(kw, steps=3)) for m, kw in calls], strokes)  # warm-up (lazy inits; 3 steps: the fewest every method accepts)
    library_before, cpu_before = time_library(pipeline, calls, strokes)
    print(f"library, same calls:                    {library_before:7.2f} s", flush=True)
    if args.quick:
        library, library_cpu, job_seconds = library_before, cpu_before, None
    else:
        library_after, cpu_after = time_library(pipeline, calls, strokes)
        print(f"library again (after):                  {library_after:7.2f} s")
        library, library_cpu = (library_before + library_after) / 2, (cpu_before + cpu_after) / 2
        # Last: once torch has run on a second thread of this process, small CPU ops on either
        # thread ran at about one core's speed (measured: the demo model's text2img took 2.9 s on
        # a new thread against 1.3 s on the main one), so a library run after it would be slowed.
        job_seconds = time_job(pipeline, calls, strokes)
    print(f"model {model}, {params[0]['height']} px, {params[0]['steps']} steps, methods "
          f"{', '.join(m for m, _ in calls)}; load average {os.getloadavg()[0]:.1f}")
    print(f"app Compare all (click to Done):        {app_seconds:7.2f} s")
    print(f"library (mean of the runs):             {library:7.2f} s")
    print(f"ratio app / library:                    {app_seconds / library:7.2f}x")
    if server_job is not None:  # the app's own work is what the click-to-Done time adds to its generation
        print(f"  of which the server's generation:     {server_job:7.2f} s = {server_job / library:.2f}x the library")
        print(f"  and the app around it:                {app_seconds - server_job:7.2f} s "
              f"(click to job start, job end to Done on the page)")
    if job_seconds is not None:
        print(f"jobs.GenerationJob with live previews:  {job_seconds:7.2f} s = {job_seconds / library:.2f}x")
    if app_cpu is not None:  # less sensitive to other processes than wall time
        print(f"CPU seconds, server / library:          {app_cpu:7.2f} s / {library_cpu:.2f} s "
              f"= {app_cpu / library_cpu:.2f}x")


if __name__ == "__main__":
    main()
