"""GPU experiment 2 (session 8): decoder channels_last; UNet under CUDA graphs (torch.compile mode "reduce-overhead", what compile_unet=True now builds) + compiled decoder, end to end. Run from the repository root: python3 docs/gpu/session8/compile_unet.py (log: compile_unet.log)."""
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
BUDGET = float(os.environ.get("BUDGET", "300"))
cuda = os.environ.get("DEV", "cuda") == "cuda"
dev, dt = torch.device("cuda" if cuda else "cpu"), torch.float16 if cuda else torch.float32
SIZE, STEPS = int(os.environ.get("SIZE", "512")), int(os.environ.get("STEPS", "50"))
def sync():
    if cuda: torch.cuda.synchronize()
def left(): return BUDGET - (time.perf_counter() - T0)
def say(*a): print(f"[{time.perf_counter() - T0:6.1f}s]", *a, flush=True)
def peak(): return torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
def reset():
    if cuda: torch.cuda.reset_peak_memory_stats()

comps = sd15_components(dev, dt)
unet0, vae = comps["unet"], comps["vae"]
pipe = GradopPipeline(comps, model_name="sd15", device=dev, dtype=dt)
img, prompt = strokes(SIZE), "a photo of a fox beside a tree"
common = dict(height=SIZE, width=SIZE, steps=STEPS, seed=0)
def run(p, name, fn, n=1):
    fn(); reset(); ts = [timed(fn, dev)[0] for _ in range(n)]
    say(f"{name:44s} " + "  ".join(f"{t:5.2f} s" for t in ts) + f"   peak {peak():.2f} GiB"); return min(ts)
t_eager = run(pipe, "eager text2img", lambda: pipe.text2img(prompt, **common))
g_eager = run(pipe, "eager gradop+ vae", lambda: pipe.gradop_plus(prompt, img, guidance_decoder="vae", **common))

lat = torch.randn(1, 4, SIZE // 8, SIZE // 8, device=dev)
target = torch.rand(1, 3, SIZE, SIZE, device=dev)
paint = make_painting_fn("blur", SIZE, SIZE)
def passes(n, decode):
    sync(); t = time.perf_counter()
    with decode.prepared():
        for _ in range(n):
            latent_gradient(lat, decode, target, paint, loss_scale=decode.loss_scale)
    sync(); return (time.perf_counter() - t) / n * 1e3
dec = GuidanceDecode(vae_decoder(vae).decode, vae, "auto", False)
passes(2, dec); say(f"decode+backward eager NCHW {passes(10, dec):.1f} ms")
vae.to(memory_format=torch.channels_last)
passes(2, dec); say(f"decode+backward eager channels_last {passes(10, dec):.1f} ms")
g_cl = run(pipe, "eager gradop+ vae, vae channels_last", lambda: pipe.gradop_plus(prompt, img, guidance_decoder="vae", **common))
vae.to(memory_format=torch.contiguous_format)

try:
    t = time.perf_counter()
    cu = torch.compile(unet0, mode="reduce-overhead")
    p2 = GradopPipeline(dict(comps, unet=cu), model_name="sd15", device=dev, dtype=dt, compile_decoder=True)
    f = lambda: p2.text2img(prompt, **common)
    g = lambda: p2.gradop_plus(prompt, img, guidance_decoder="vae", **common)
    f(); say(f"text2img warm-up (UNet compile, cuda graphs) {time.perf_counter() - t:.1f} s")
    t = time.perf_counter(); g(); say(f"gradop+ warm-up (decoder compile) {time.perf_counter() - t:.1f} s")
    t_c = run(p2, "text2img, UNet reduce-overhead", f, 2)
    g_c = run(p2, "gradop+ vae, UNet reduce-overhead + decoder compiled", g, 2)
    e = p2.gradop_plus(prompt, img, guidance_decoder="vae", **common).images[0]
    b = pipe.gradop_plus(prompt, img, guidance_decoder="vae", **common).images[0]
    import numpy as np
    say("compiled vs eager gradop+ image: mean abs diff /255", float(np.abs(np.asarray(e, float) - np.asarray(b, float)).mean()))
    say(f"SUMMARY eager t2i {t_eager:.2f} g+ {g_eager:.2f} ({g_eager/t_eager:.2f}x); compiled t2i {t_c:.2f} g+ {g_c:.2f} ({g_c/t_c:.2f}x, {g_c/t_eager:.2f}x of eager t2i)")
    if left() > 30:
        sdedit = run(p2, "sdedit 0.8, compiled", lambda: p2.sdedit(prompt, img, strength=0.8, **common))
        vae.to(memory_format=torch.channels_last)
        t = time.perf_counter(); g(); say(f"warm-up channels_last compiled {time.perf_counter()-t:.1f} s")
        run(p2, "gradop+ vae, compiled + vae channels_last", g, 2)
except Exception as ex:
    import traceback; traceback.print_exc(); say("compiled path failed", type(ex).__name__, str(ex)[:400])
say("done")
