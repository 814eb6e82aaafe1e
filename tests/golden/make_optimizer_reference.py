#!/usr/bin/python3
"""Reference numbers for tests/trainer/test_optimizer.cpp, test_grad_clip.cpp, test_lr_schedule.cpp.

Run with Debian's python3-torch:  /usr/bin/python3 tests/golden/make_optimizer_reference.py
It prints C++ array literals; the tests embed them (the tests themselves need no Python).

Inputs are small dyadic rationals, exact in float and double, built from the same integer
formulas in the C++ tests (init_value, grad_value below), so both sides start bitwise equal:
three parameters of awkward sizes 1, 7 and 13, the first without weight decay (a bias), the
other two with it, updated for 5 steps with a different gradient each step.
"""
import math

import torch

SIZES = [1, 7, 13]
DECAY = [False, True, True]
STEPS = 5


def init_value(i, j):
    # sign alternates, magnitude in [0.5, 1.125]: far from 0, so relative comparison is fair
    k = 3 * i + 7 * j
    return (1.0 if k % 2 == 0 else -1.0) * (0.5 + (k % 11) / 16.0)


def grad_value(i, j, step):
    # step counts from 1; values in [-0.5, 0.5] in steps of 1/16, zero included
    return ((5 * i + 3 * j + 7 * step) % 17 - 8) / 16.0


def make_params(dtype):
    return [torch.tensor([init_value(i, j) for j in range(n)], dtype=dtype, requires_grad=True)
            for i, n in enumerate(SIZES)]


def set_grads(params, step):
    for i, p in enumerate(params):
        p.grad = torch.tensor([grad_value(i, j, step) for j in range(SIZES[i])], dtype=p.dtype)


def groups(params, weight_decay):
    # The two-group set-up the C++ optimizers implement (Parameter::decay).
    return [{"params": [p for p, d in zip(params, DECAY) if d], "weight_decay": weight_decay},
            {"params": [p for p, d in zip(params, DECAY) if not d], "weight_decay": 0.0}]


def run(make_optimizer, dtype, lrs=None):
    params = make_params(dtype)
    opt = make_optimizer(params)
    for step in range(1, STEPS + 1):
        if lrs is not None:
            for g in opt.param_groups:
                g["lr"] = lrs[step - 1]
        set_grads(params, step)
        opt.step()
    return params, opt


def literal(x, dtype):
    return f"{x:.9g}f" if dtype == torch.float32 else repr(float(x))


def emit(name, tensors, dtype):
    ctype = "float" if dtype == torch.float32 else "double"
    values = [literal(v, dtype) for t in tensors for v in t.detach().reshape(-1).tolist()]
    lines = []
    for k in range(0, len(values), 4):
        lines.append("    " + ", ".join(values[k:k + 4]) + ",")
    print(f"constexpr {ctype} {name}[] = {{\n" + "\n".join(lines) + "\n};")


def check_far_from_zero(params):
    smallest = min(abs(v) for p in params for v in p.detach().tolist())
    assert smallest > 0.1, smallest  # keeps the relative tolerance meaningful


def adamw(params):
    return torch.optim.AdamW(groups(params, 0.1), lr=1e-2, betas=(0.9, 0.98), eps=1e-8)


def sgd(params):
    return torch.optim.SGD(groups(params, 0.01), lr=0.05, momentum=0.9)


def sgd_plain(params):
    return torch.optim.SGD(groups(params, 0.01), lr=0.05, momentum=0.0)


def state(opt, params, key):
    return [opt.state[p][key] for p in params]


print("// ---- test_optimizer.cpp ----")
print(f"// torch {torch.__version__}")
for dtype, suffix in [(torch.float64, "64"), (torch.float32, "32")]:
    params, opt = run(adamw, dtype)
    check_far_from_zero(params)
    emit(f"kAdamWParams{suffix}", params, dtype)
    emit(f"kAdamWExpAvg{suffix}", state(opt, params, "exp_avg"), dtype)
    emit(f"kAdamWExpAvgSq{suffix}", state(opt, params, "exp_avg_sq"), dtype)

LRS = [1e-2, 3e-2, 5e-3, 2e-2, 1e-3]
params, _ = run(adamw, torch.float64, LRS)
check_far_from_zero(params)
emit("kAdamWVaryingLrParams64", params, torch.float64)

for dtype, suffix in [(torch.float64, "64"), (torch.float32, "32")]:
    params, opt = run(sgd, dtype)
    check_far_from_zero(params)
    emit(f"kSgdParams{suffix}", params, dtype)
    emit(f"kSgdMomentumBuffer{suffix}", state(opt, params, "momentum_buffer"), dtype)

params, _ = run(sgd_plain, torch.float64)
check_far_from_zero(params)
emit("kSgdNoMomentumParams64", params, torch.float64)

print("// ---- test_grad_clip.cpp ----")
# Gradients of step 1; their norm is about 1.3, so max_norm 1 clips and max_norm 5 does not.
for dtype, suffix in [(torch.float64, "64"), (torch.float32, "32")]:
    params = make_params(dtype)
    set_grads(params, 1)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    print(f"constexpr double kClipNorm{suffix} = {float(norm)!r};")
    emit(f"kClippedGrads{suffix}", [p.grad for p in params], dtype)

print("// ---- test_lr_schedule.cpp ----")
# The schedules are defined by formula (trainer/lr_schedule.h); this evaluates the same
# definitions independently with Python's math module.


def warmup_then(lr, warmup, step, after):
    return lr * step / warmup if step <= warmup else after(step)


def inverse_sqrt(lr, warmup, step):
    return warmup_then(lr, warmup, step, lambda s: lr * math.sqrt(max(warmup, 1) / s))


def cosine(lr, min_lr, warmup, total, step):
    def decay(s):
        if s >= total:
            return min_lr
        t = (s - warmup) / (total - warmup)
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    return warmup_then(lr, warmup, step, decay)


def constant(lr, warmup, step):
    return warmup_then(lr, warmup, step, lambda s: lr)


# (type, lr, warmup_steps, min_lr, total_steps, step) -> learning rate; steps at the key points:
# first step, end of warmup, first step after it, end of the schedule, after the end.
CASES = (
    [("constant", 5e-4, 0, 0.0, 0, s, constant(5e-4, 0, s)) for s in [1, 2, 1000]] +
    [("constant", 5e-4, 4, 0.0, 0, s, constant(5e-4, 4, s)) for s in [1, 3, 4, 5]] +
    [("inverse_sqrt", 1e-3, 100, 0.0, 0, s, inverse_sqrt(1e-3, 100, s))
     for s in [1, 50, 100, 101, 400, 10000]] +
    [("inverse_sqrt", 1e-3, 0, 0.0, 0, s, inverse_sqrt(1e-3, 0, s)) for s in [1, 4, 9]] +
    [("cosine", 3e-4, 10, 1e-5, 100, s, cosine(3e-4, 1e-5, 10, 100, s))
     for s in [1, 10, 11, 55, 99, 100, 101, 1000]] +
    [("cosine", 1e-3, 0, 0.0, 8, s, cosine(1e-3, 0.0, 0, 8, s)) for s in [1, 2, 4, 7, 8, 9]])
print("constexpr ScheduleCase kScheduleCases[] = {")
for kind, lr, warmup, min_lr, total, step, expected in CASES:
    print(f"    {{ScheduleType::{kind}, {lr!r}, {warmup}, {min_lr!r}, {total}, {step}, "
          f"{expected!r}}},")
print("};")
