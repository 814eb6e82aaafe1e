#!/usr/bin/env python3
"""GPU training throughput and MFU, this project against PyTorch on the same GPU, one command:

    bench/gpu_compare.py [--train-step PATH] [--steps S] [--warmup W] [--rounds R]
                         [--batch B] [--device cuda|cpu] [--profile]
    bench/gpu_compare.py --kernels build/bench/gpu_kernels   (the kernels alone, beside PyTorch's:
                         F.linear, scaled_dot_product_attention forward + backward (its cuDNN
                         backend beside our "attention cudnn" rows), layer_norm)

(--device cpu --batch 2 --steps 1 --warmup 0 --rounds 1: a check of this script without a GPU.)

Models (the GPU issue's): ViT-B/16 at 224 x 224 x 3 (patch 16, d 768, 12 layers, 12 heads,
d_ff 3072, 1000 classes, batch 128) and the encoder-decoder of d 1024, 16 heads, d_ff 4096,
6+6 layers, 256 tokens, vocabulary 32,000 (batch 32, pre-LN, dropout 0.1, label smoothing
0.1), on synthetic batches. Contenders, alternated `--rounds` times (best round counts):
  - ours: build/bench/train_step --device cuda, fp32 and bf16 (bf16 operands of every matrix
    product, fp32 accumulation; activations, weights and optimizer state fp32);
  - for the encoder-decoder also ours bf16 with --attention-dropout fused ("ours bf16 fused":
    train.attention_dropout: fused, the attention's dropout masks drawn inside cuDNN's kernels,
    as PyTorch's fused attention draws its own);
  - for the ViT also both in bf16 with the tanh GELU ("ours bf16 tanh", "torch bf16 tanh":
    model.activation: gelu_tanh, whose feed-forward layers run cuBLASLt's GELU epilogues in
    ours; F.gelu(approximate="tanh") in PyTorch's);
  - PyTorch eager fp32 (no TF32) and bf16 autocast (bench/torch_gpu_reference.py);
  - with --materialised also ours with TR_FLASH_ATTENTION=0 ("ours fp32 mat", "ours bf16 mat":
    attention through the materialised kernels instead of flash attention);
  - with --own-attention also ours bf16 with TR_CUDNN=0 ("ours bf16 own": the own flash kernels,
    mma.sync with the scores in registers, where the default takes cuDNN's fused attention), and
    the same with TR_FLASH_KERNELS=wmma ("ours bf16 wmma": the own WMMA kernels, the scores
    staged in shared memory).

MFU = model FLOPs per second / the GPU's dense peak for the precision (the trainer's data-sheet
table, trainer/device_peak.h, as train_step reports it; "n/a" for a GPU not in it). FLOPs: bench/flops.py, 3 x the forward's matrix-multiply FLOPs; for our ViT
the FLOPs it executes (its last layer computes the CLS row only), which understates nothing.
Prints one table and writes the rows as JSON to $OUT/gpu_compare.json when OUT is set.
"""
import argparse
import json
import os
import subprocess
import sys

from flops import encdec_flops_per_step, vit_flops_per_image
from torch_gpu_reference import ENCDEC_LARGE, VIT_B16

def run_json(cmd, timeout, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:] or ["exit %d" % r.returncode]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def ours_cmd(train_step, model, steps, warmup, batch, device, precision="fp32", extra=()):
    if model == "vit":
        c = dict(VIT_B16, batch=batch or VIT_B16["batch"])
        shape = ["--image", c["image"], "--patch", c["patch"], "--channels", c["channels"],
                 "--classes", c["classes"], "--d", c["d"], "--layers", c["layers"], "--heads",
                 c["heads"], "--ff", c["ff"], "--batch", c["batch"], "--dropout", 0]
    else:
        c = dict(ENCDEC_LARGE, batch=batch or ENCDEC_LARGE["batch"])
        shape = ["--d", c["d"], "--layers", c["layers"], "--heads", c["heads"], "--ff", c["ff"],
                 "--vocab", c["vocab"], "--len", c["length"], "--batch", c["batch"],
                 "--dropout", 0.1]
    return [train_step, model, "--device", device, "--precision", precision, "--steps", str(steps),
            "--warmup", str(warmup)] + [str(x) for x in shape] + list(extra)


def torch_cmd(here, model, precision, steps, warmup, batch, device, extra=()):
    return [sys.executable, os.path.join(here, "torch_gpu_reference.py"), model, "--precision",
            precision, "--steps", str(steps), "--warmup", str(warmup), "--batch", str(batch),
            "--device", device] + list(extra)


def torch_kernel_ms(fn, reps=20, warmup=3):
    import torch
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def torch_kernel(row):
    """PyTorch's time for one of bench/gpu_kernels' cases (same shape, random inputs)."""
    import torch
    import torch.nn.functional as F
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = torch.bfloat16 if row["precision"] == "bf16" else torch.float32
    kernel, shape = row["kernel"], row["shape"]
    if kernel == "gemm":
        m, n, k = (int(x) for x in shape.split("x"))
        x = torch.rand(m, k, device="cuda", dtype=dtype) * 2 - 1
        w = torch.rand(n, k, device="cuda", dtype=dtype) * 2 - 1
        return torch_kernel_ms(lambda: F.linear(x, w))
    if kernel.startswith("attention"):
        b, h, t, dh = (int(x[1:]) if x[0] != "D" else int(x[2:]) for x in shape.split())
        q, k, v = (torch.rand(b, h, t, dh, device="cuda", dtype=dtype, requires_grad=True)
                   for _ in range(3))
        g = torch.rand(b, h, t, dh, device="cuda", dtype=dtype)

        dropout_p = 0.1 if "dropout" in kernel else 0.0

        def step():
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
            out.backward(g)
        if "cudnn" in kernel:
            # Beside ours on cuDNN: PyTorch's cuDNN backend where it has one (else its default).
            try:
                from torch.nn.attention import SDPBackend, sdpa_kernel
                with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                    return torch_kernel_ms(step)
            except (ImportError, RuntimeError):
                pass
        return torch_kernel_ms(step)
    if kernel.startswith("linear dW+db"):
        n, out, inp = (int(x) for x in shape.split("x"))
        x = torch.rand(n, inp, device="cuda", dtype=dtype) * 2 - 1
        w = (torch.rand(out, inp, device="cuda", dtype=dtype) * 2 - 1).requires_grad_()
        b = torch.zeros(out, device="cuda", dtype=dtype, requires_grad=True)
        y = F.linear(x, w, b)
        g = torch.rand_like(y)
        return torch_kernel_ms(lambda: torch.autograd.grad(y, (w, b), g, retain_graph=True))
    if kernel.startswith("linear gelu_tanh fwd"):  # F.linear then the tanh GELU, no autograd
        n, out, inp = (int(x) for x in shape.split("x"))
        x = torch.rand(n, inp, device="cuda", dtype=dtype) * 2 - 1
        w = torch.rand(out, inp, device="cuda", dtype=dtype) * 2 - 1
        b = torch.rand(out, device="cuda", dtype=dtype)
        with torch.no_grad():
            return torch_kernel_ms(lambda: F.gelu(F.linear(x, w, b), approximate="tanh"))
    if kernel.startswith("linear gelu_tanh bwd"):  # through F.linear and the GELU before it
        n, out, inp = (int(x) for x in shape.split("x"))
        h = (torch.rand(n, inp, device="cuda", dtype=dtype) * 2 - 1).requires_grad_()
        w = (torch.rand(out, inp, device="cuda", dtype=dtype) * 2 - 1).requires_grad_()
        b = torch.zeros(out, device="cuda", dtype=dtype, requires_grad=True)
        y = F.linear(F.gelu(h, approximate="tanh"), w, b)
        g = torch.rand_like(y)
        return torch_kernel_ms(lambda: torch.autograd.grad(y, (h, w, b), g, retain_graph=True))
    if kernel == "dropout mask":
        b, h, t = (int(x[1:]) for x in shape.split())
        keep = torch.empty(b, h, t, t, device="cuda", dtype=torch.bool)
        return torch_kernel_ms(lambda: keep.bernoulli_(0.9))
    rows, cols = (int(x) for x in shape.split("x"))
    x = torch.rand(rows, cols, device="cuda", requires_grad=True)
    w = torch.ones(cols, device="cuda", requires_grad=True)
    bias = torch.zeros(cols, device="cuda", requires_grad=True)
    if kernel == "layernorm forward":
        with torch.no_grad():
            return torch_kernel_ms(lambda: F.layer_norm(x, (cols,), w, bias))
    y = F.layer_norm(x, (cols,), w, bias)
    g = torch.rand_like(y)
    return torch_kernel_ms(lambda: torch.autograd.grad(y, (x, w, bias), g, retain_graph=True))


def compare_kernels(gpu_kernels, library_path, timeout):
    env = dict(os.environ, LD_LIBRARY_PATH=library_path) if library_path else None
    r = subprocess.run([gpu_kernels], capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        print("gpu_kernels failed:", (r.stderr or r.stdout).strip().splitlines()[-1:])
        return
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    print(f"{'kernel':29} {'shape':22} {'prec':5} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>10} "
          f"{'ours rate':>12}")
    for row in rows:
        try:
            theirs = torch_kernel(row)
        except Exception as e:  # a shape PyTorch refuses: show ours alone
            theirs = float("nan")
            print("  torch:", type(e).__name__, str(e).splitlines()[0][:100])
        rate = (f"{row['tflops']:7.1f} TF/s" if "tflops" in row else f"{row['gbps']:7.0f} GB/s")
        print(f"{row['kernel']:29} {row['shape']:22} {row['precision']:5} {row['ms']:9.3f} "
              f"{theirs:9.3f} {theirs / row['ms']:9.2f}x {rate:>12}")
        row["torch_ms"] = theirs
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_kernels.json"), "w") as f:
            json.dump(rows, f, indent=1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-step", default=os.path.join(here, "..", "build", "bench", "train_step"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per run")
    ap.add_argument("--batch", type=int, default=0, help="0 = each model's default")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ours-library-path", default="",
                    help="LD_LIBRARY_PATH for train_step only (a bundle's libraries; PyTorch "
                         "keeps the caller's)")
    ap.add_argument("--profile", action="store_true",
                    help="ours only: train_step --profile, each device op's time per step")
    ap.add_argument("--profile-precisions", default="fp32,bf16")
    ap.add_argument("--materialised", action="store_true",
                    help="also ours with TR_FLASH_ATTENTION=0 (materialised attention)")
    ap.add_argument("--impls", default="",
                    help="comma-separated contenders to run only (e.g. \"ours bf16,torch bf16\")")
    ap.add_argument("--own-attention", action="store_true",
                    help="also ours bf16 with TR_CUDNN=0 (the own flash kernels, not cuDNN's): "
                    "mma.sync (the default) and WMMA (TR_FLASH_KERNELS=wmma)")
    ap.add_argument("--kernels", default="",
                    help="path of bench/gpu_kernels: the kernels alone beside PyTorch's, then exit")
    args = ap.parse_args()

    if args.kernels:
        compare_kernels(args.kernels, args.ours_library_path, args.timeout)
        return

    if args.profile:
        env = dict(os.environ, LD_LIBRARY_PATH=args.ours_library_path) if args.ours_library_path else None
        for model, precision in (("vit", "fp32"), ("vit", "bf16"), ("encdec", "fp32"),
                                 ("encdec", "bf16")):
            if precision not in args.profile_precisions.split(",") or (
                    precision == "bf16" and args.device != "cuda"):
                continue
            cmd = ours_cmd(args.train_step, model, args.steps, args.warmup, args.batch, args.device,
                           precision)
            r = subprocess.run(cmd + ["--profile"], capture_output=True, text=True,
                               timeout=args.timeout, env=env)
            print("== ours", precision, model, "exit", r.returncode)
            print("\n".join(r.stdout.strip().splitlines()[:-1]) or r.stderr.strip())
        return

    rows = []
    gpu, peaks = "", None
    for model in ("vit", "encdec"):
        contenders = {
            "ours fp32": ours_cmd(args.train_step, model, args.steps, args.warmup, args.batch,
                                  args.device),
            "ours bf16": ours_cmd(args.train_step, model, args.steps, args.warmup, args.batch,
                                  args.device, "bf16"),
            "torch fp32": torch_cmd(here, model, "fp32", args.steps, args.warmup, args.batch,
                                    args.device),
            "torch bf16": torch_cmd(here, model, "bf16", args.steps, args.warmup, args.batch,
                                    args.device),
        }
        if model == "vit":  # its MLP: also the tanh GELU, which ours fuses into the GEMMs
            tanh = ["--activation", "gelu_tanh"]
            contenders["ours bf16 tanh"] = ours_cmd(args.train_step, model, args.steps,
                                                    args.warmup, args.batch, args.device, "bf16",
                                                    tanh)
            contenders["torch bf16 tanh"] = torch_cmd(here, model, "bf16", args.steps,
                                                      args.warmup, args.batch, args.device, tanh)
        if model == "encdec":  # its attention has dropout: also with the masks drawn in cuDNN
            contenders["ours bf16 fused"] = ours_cmd(
                args.train_step, model, args.steps, args.warmup, args.batch, args.device, "bf16",
                ["--attention-dropout", "fused"])
        if args.materialised:
            for precision in ("fp32", "bf16"):
                contenders[f"ours {precision} mat"] = ours_cmd(
                    args.train_step, model, args.steps, args.warmup, args.batch, args.device,
                    precision)
        if args.own_attention:
            for name in ("ours bf16 own", "ours bf16 wmma"):
                contenders[name] = ours_cmd(args.train_step, model, args.steps, args.warmup,
                                            args.batch, args.device, "bf16")
        if args.device != "cuda":
            for name in ("ours bf16", "ours bf16 mat", "ours bf16 own", "ours bf16 wmma",
                         "ours bf16 fused", "ours bf16 tanh"):
                contenders.pop(name, None)
        if args.impls:
            wanted = {name.strip() for name in args.impls.split(",")}
            contenders = {name: cmd for name, cmd in contenders.items() if name in wanted}
        best = {}
        for _ in range(args.rounds):
            for name, cmd in contenders.items():
                env = None
                if name.startswith("ours"):
                    env = dict(os.environ)
                    if args.ours_library_path:
                        env["LD_LIBRARY_PATH"] = args.ours_library_path
                    if name.endswith(" mat"):
                        env["TR_FLASH_ATTENTION"] = "0"
                    if name.endswith(" own") or name.endswith(" wmma"):
                        env["TR_CUDNN"] = "0"
                    if name.endswith(" own"):
                        env.pop("TR_FLASH_KERNELS", None)  # the default: mma.sync
                    if name.endswith(" wmma"):
                        env["TR_FLASH_KERNELS"] = "wmma"
                try:
                    r = run_json(cmd, args.timeout, env)
                except subprocess.TimeoutExpired:
                    r = {"error": ["timed out after %d s" % args.timeout]}
                if "error" in r:
                    best.setdefault(name, r)
                    print(f"== {model} {name}: failed", flush=True)
                    continue
                # As each run ends (the table comes at the end: a timeout keeps these).
                print(f"== {model} {name}: {r['throughput']:.1f} {r.get('unit', '')}", flush=True)
                gpu = r.get("device", gpu)
                if r.get("peak_tflops_fp32", 0) > 0:  # train_step's, from the trainer's table
                    peaks = {"fp32": r["peak_tflops_fp32"], "bf16": r["peak_tflops_bf16"]}
                if "throughput" not in best.get(name, {}) or r["throughput"] > best[name]["throughput"]:
                    best[name] = r
        for name, r in best.items():
            rows.append(dict(r, model=model, impl=name))

    print(f"GPU: {gpu or 'unknown (PyTorch did not run)'}   peaks (dense TFLOP/s): "
          f"{peaks if peaks else 'n/a'}   best of {args.rounds} rounds x {args.steps} steps")
    print(f"{'model':7} {'impl':15} {'throughput':>11} {'unit':16} {'vs torch fp32':>13} "
          f"{'vs torch bf16':>13} {'TFLOP/s':>8} {'MFU':>6} {'peak MB':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['model']:7} {row['impl']:15} failed: {' '.join(row['error'])}")
            continue
        ref = {k: next((x for x in rows if x["model"] == row["model"] and x["impl"] == k
                        and "throughput" in x), None) for k in ("torch fp32", "torch bf16")}
        if row["model"] == "vit":
            flops = vit_flops_per_image(VIT_B16, cls_only_last_layer=row["impl"].startswith("ours"))
        else:
            shape = dict(ENCDEC_LARGE, batch=args.batch or ENCDEC_LARGE["batch"])
            flops = encdec_flops_per_step(shape) / row["tokens_per_step"]
        tflops = row["throughput"] * flops / 1e12
        precision = row["impl"].split()[1]
        mfu = f"{100 * tflops / peaks[precision]:5.1f}%" if peaks else "  n/a"
        ratios = [f"{row['throughput'] / ref[k]['throughput']:12.2f}x" if ref[k] else f"{'-':>13}"
                  for k in ("torch fp32", "torch bf16")]
        peak_mb = row.get("peak_tensor_mb", row.get("peak_gpu_mb", 0.0))
        print(f"{row['model']:7} {row['impl']:15} {row['throughput']:11.1f} {row['unit']:16} "
              f"{ratios[0]} {ratios[1]} {tflops:8.1f} {mfu:>6} {peak_mb:8.0f}")
        row.update(tflops=tflops, flops_per_unit=flops)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_compare.json"), "w") as f:
            json.dump({"gpu": gpu, "peaks": peaks, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
