"""GPU experiment (session 8): where GradOP+'s time goes on CUDA, and what compile buys. Run from the repository root: python3 docs/gpu/session8/profile_compile.py (log: profile_compile.log)."""
import os, sys, time
import torch
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "bench")]
from bench_methods import sd15_components, strokes, timed
from gradop.pipeline import GradopPipeline
from gradop.precision import GuidanceDecode
from gradop.decoders import vae_decoder
from gradop.optimize import latent_gradient
from gradop.painting import make_painting_fn

T0 = time.perf_counter()
BUDGET = float(os.environ.get("BUDGET", "400"))
dev, dt = torch.device(os.environ.get("DEV", "cuda")), torch.float16 if os.environ.get("DEV", "cuda") == "cuda" else torch.float32
SIZE, STEPS = int(os.environ.get("SIZE", "512")), int(os.environ.get("STEPS", "50"))
cuda = dev.type == "cuda"
def sync():
    if cuda: torch.cuda.synchronize()
def left(): return BUDGET - (time.perf_counter() - T0)
def say(*a): print(f"[{time.perf_counter() - T0:6.1f}s]", *a, flush=True)

comps = sd15_components(dev, dt)
unet0 = comps["unet"]
pipe = GradopPipeline(comps, model_name="sd15", device=dev, dtype=dt)
img, prompt = strokes(SIZE), "a photo of a fox beside a tree"
common = dict(height=SIZE, width=SIZE, steps=STEPS, seed=0)
def t2i(): return pipe.text2img(prompt, **common)
def gp(dec="vae"): return pipe.gradop_plus(prompt, img, guidance_decoder=dec, **common)
def twice(name, fn):
    fn(); s, r = timed(fn, dev); s2, _ = timed(fn, dev); say(f"{name:34s} {s:6.2f} s  {s2:6.2f} s"); return min(s, s2)

# A. baseline, and GPU busy time from the profiler
base_t = twice("text2img", t2i); base_g = twice("gradop+ vae", gp)
if cuda:
    from torch.profiler import profile, ProfilerActivity
    for name, fn in (("text2img", t2i), ("gradop+ vae", gp)):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            s, _ = timed(fn, dev)
        busy = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6
        say(f"profile {name}: wall {s:.2f} s (profiled), GPU kernels busy {busy:.2f} s")
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=12), flush=True)

# B. one decode+backward: with the loop's syncs vs none; one UNet CFG step with/without sync
lat = torch.randn(1, 4, SIZE // 8, SIZE // 8, device=dev)
target = torch.rand(1, 3, SIZE, SIZE, device=dev)
paint = make_painting_fn("blur", SIZE, SIZE)
dec = GuidanceDecode(vae_decoder(pipe.vae).decode, pipe.vae, "auto", False)
say("decode mode", dec.mode, "loss_scale", dec.loss_scale)
def passes(n, decode, syncing):
    sync(); t = time.perf_counter()
    with getattr(decode, "prepared")():
        for _ in range(n):
            if syncing:
                latent_gradient(lat, decode, target, paint, loss_scale=decode.loss_scale)
            else:
                z = lat.detach().requires_grad_(True)
                loss = torch.nn.functional.mse_loss(paint(decode(z).float()), target)
                torch.autograd.grad(loss * 1e5, [z])
    sync(); return (time.perf_counter() - t) / n
passes(3, dec, True)
say(f"decode+backward per pass: loop (syncs) {passes(10, dec, True)*1e3:.1f} ms, no sync {passes(10, dec, False)*1e3:.1f} ms")
enc = pipe.text_encoder(torch.zeros(2, 77, dtype=torch.long, device=dev))[0]
x = torch.randn(2, 4, SIZE // 8, SIZE // 8, device=dev, dtype=dt)
def unet_steps(n, unet, syncing):
    sync(); t = time.perf_counter()
    with torch.no_grad():
        for i in range(n):
            y = unet(x, torch.tensor(500 - i, device=dev), encoder_hidden_states=enc).sample
            if syncing: y.sum().item()
    sync(); return (time.perf_counter() - t) / n
unet_steps(3, unet0, False)
say(f"UNet CFG step: no sync {unet_steps(10, unet0, False)*1e3:.1f} ms, sync {unet_steps(10, unet0, True)*1e3:.1f} ms")

# C. compiled decoder pass (default mode)
if left() > 200:
    t = time.perf_counter()
    cdec = GuidanceDecode(torch.compile(vae_decoder(pipe.vae).decode), pipe.vae, "auto", False)
    passes(2, cdec, True); say(f"decoder compile {time.perf_counter()-t:.1f} s")
    say(f"compiled decode+backward per pass: loop {passes(10, cdec, True)*1e3:.1f} ms, no sync {passes(10, cdec, False)*1e3:.1f} ms")

# D. compiled UNet (default mode, then reduce-overhead = CUDA graphs)
for mode in ("default", "reduce-overhead", "max-autotune-no-cudagraphs"):
    if left() < 120: say("skip unet", mode, "(budget)"); continue
    try:
        torch._dynamo.reset()
        cu = torch.compile(unet0, mode=None if mode == "default" else mode)
        t = time.perf_counter(); unet_steps(3, cu, False); say(f"unet compile {mode}: {time.perf_counter()-t:.1f} s")
        say(f"compiled UNet ({mode}) CFG step: {unet_steps(10, cu, False)*1e3:.1f} ms")
        comps2 = dict(comps, unet=cu)
        p2 = GradopPipeline(comps2, model_name="sd15", device=dev, dtype=dt, compile_decoder=True)
        f = lambda: p2.text2img(prompt, **common)
        g = lambda: p2.gradop_plus(prompt, img, guidance_decoder="vae", **common)
        t = time.perf_counter(); f(); g(); say(f"pipeline warm-up {time.perf_counter()-t:.1f} s")
        twice(f"text2img unet {mode}", f); twice(f"gradop+ vae unet {mode} + dec compiled", g)
    except Exception as e:
        say("unet", mode, "failed:", type(e).__name__, str(e)[:300])
say(f"baseline text2img {base_t:.2f}, gradop+ {base_g:.2f}; peak {torch.cuda.max_memory_allocated()/2**30 if cuda else 0:.2f} GiB")
