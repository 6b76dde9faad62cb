"""Parcel-steps per second of the daemon's `step`, beside a FLOP-derived ceiling.

The ceiling is the dense matrix-multiply rate measured on the same device in the same run,
divided by the model's FLOPs per parcel-step: what `step` would reach if every FLOP ran at GEMM
speed. Usage: python bench/step_speed.py [--device cuda] [--threads N] [--shapelets 4,7,11,14]
"""

from __future__ import annotations

import argparse
import time

import torch

from eowatch.models.network import Architecture, EarlyClassifier


def flops_per_step(arch: Architecture) -> int:
    """Multiply-adds x2 of the LSTM gates, the shapelet windows and both heads for one parcel
    and one step."""
    flops, inputs = 0, arch.n_bands + 1
    for _ in range(arch.num_layers):
        flops += 2 * 4 * arch.hidden_size * (inputs + arch.hidden_size)
        inputs = arch.hidden_size
    flops += sum(2 * arch.shapelets_per_size * k * (arch.n_bands + 1)
                 for k in arch.shapelet_sizes)
    return flops + 2 * (arch.hidden_size + arch.n_shapelets) * (arch.n_classes + 1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_flops_per_second(device: str, size: int = 2048, seconds: float = 1.0) -> float:
    a = torch.rand(size, size, device=device)
    b = torch.rand(size, size, device=device)
    torch.mm(a, b)
    sync(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    sync(device)
    return 2 * size**3 * runs / (time.perf_counter() - start)


@torch.inference_mode()
def steps_per_second(model: EarlyClassifier, batch: int, device: str, seconds: float) -> float:
    state = model.init_state(batch, device=device)
    x = torch.rand(batch, model.arch.n_bands, device=device)
    days = torch.full((batch,), 120.0, device=device)
    for _ in range(3):
        state, _, _ = model.step(state, x, days)
    sync(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        state, _, _ = model.step(state, x, days)
        runs += 1
    sync(device)
    return batch * runs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--batches", default="1,64,1024,16384")
    parser.add_argument("--shapelets", default="",
                        help="widths in steps of a shapelet front end, 32 each (default none)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = tuple(int(k) for k in args.shapelets.split(",") if k)
    arch = Architecture(n_bands=13, n_classes=6, hidden_size=64, num_layers=2,
                        shapelet_sizes=widths)
    model = EarlyClassifier(arch).to(args.device).eval()
    flops = flops_per_step(arch)
    gemm = gemm_flops_per_second(args.device)
    ceiling = gemm / flops
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    front = f" and shapelets {widths} x {arch.shapelets_per_size}" if widths else ""
    print(f"step of a {arch.num_layers}x{arch.hidden_size} LSTM{front}, 13 bands, on {name}, "
          f"torch {torch.__version__}")
    print(f"{flops / 1e6:.3f} MFLOP per parcel-step; GEMM {gemm / 1e9:.1f} GFLOP/s -> ceiling "
          f"{ceiling:,.0f} parcel-steps/s\n")
    print(f"{'batch':>7} {'parcel-steps/s':>15} {'us/step':>9} {'of ceiling':>11}")
    for batch in (int(b) for b in args.batches.split(",")):
        rate = steps_per_second(model, batch, args.device, args.seconds)
        print(f"{batch:>7} {rate:>15,.0f} {batch / rate * 1e6:>9.1f} {rate / ceiling:>10.1%}")


if __name__ == "__main__":
    main()
