"""Forward latency of the TopViT attention variants for one cell's worth of crops (46), on the CPU.

Two geometries: the shipped one (the architecture of checkpoints/topvit-chromid, or the TopViTConfig defaults
when it is absent) and the paper's (199 x 99 canvas padded to 200 x 100, patch 4 -> 50 x 25 = 1,250 tokens, width
128 with 4 heads).
Each variant reports the best of a few eval-mode forwards under torch.no_grad. A forward that runs past the time
limit is stopped at the next layer boundary and reported as such, with its extrapolated full time.

    python benchmarks/attention.py [--threads 2] [--repeats 3] [--time-limit 30]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from karyohf.models import TopViTConfig, TopViTForImageClassification


BATCH = 46  # chromosomes in a normal human cell
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "topvit-chromid"
ARCHITECTURE_FIELDS = ("image_size", "patch_size", "patch_embedding", "conv_stem_blocks", "hidden_size",
                       "num_hidden_layers", "num_attention_heads", "intermediate_size")


def shipped_geometry() -> dict:
    """The shipped checkpoint's architecture with the attention left free (defaults if nothing is shipped)."""
    if not (SHIPPED_CHECKPOINT / "config.json").is_file():
        return {}
    config = TopViTConfig.from_pretrained(SHIPPED_CHECKPOINT)
    return {field: getattr(config, field) for field in ARCHITECTURE_FIELDS}


GEOMETRIES = {
    "shipped": shipped_geometry(),
    "paper": {"image_size": (200, 100), "patch_size": 4},
}
VARIANTS = {
    "softmax": {"attention_type": "softmax"},
    "performer": {"attention_type": "performer"},
    "topvit-explicit": {"attention_type": "topvit", "toeplitz_product": "explicit"},
    "topvit-fft": {"attention_type": "topvit", "toeplitz_product": "fft"},
}


class TimeLimitExceeded(Exception):
    def __init__(self, layers_done: int):
        self.layers_done = layers_done


def timed_forward(model: TopViTForImageClassification, pixels: torch.Tensor, time_limit: float) -> float:
    """Seconds for one forward; raises TimeLimitExceeded at the first layer that starts after `time_limit`."""
    start = time.perf_counter()
    layers = model.topvit.layers

    def stop_if_over_time(module, args):
        if time.perf_counter() - start > time_limit:
            raise TimeLimitExceeded(layers_done=list(layers).index(module))

    hooks = [layer.register_forward_pre_hook(stop_if_over_time) for layer in layers]
    try:
        model(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    return time.perf_counter() - start


def measure_geometry(geometry_overrides: dict, repeats: int, time_limit: float) -> dict:
    """Best forward time per variant. The variants take turns within each repeat, so that the load of a shared
    machine drifting during the run shifts all of them alike rather than one."""
    torch.manual_seed(0)
    models = {
        variant: TopViTForImageClassification(TopViTConfig(**geometry_overrides, **overrides)).eval()
        for variant, overrides in VARIANTS.items()
    }
    config = next(iter(models.values())).config
    pixels = torch.randn(BATCH, config.num_channels, *config.image_size)
    runs = {variant: [] for variant in models}
    stopped = {}
    with torch.no_grad():
        for _ in range(repeats):
            for variant, model in models.items():
                if variant in stopped or sum(runs[variant]) > time_limit:  # slow variants get fewer repeats
                    continue
                start = time.perf_counter()
                try:
                    runs[variant].append(timed_forward(model, pixels, time_limit))
                except TimeLimitExceeded as exceeded:
                    elapsed = time.perf_counter() - start
                    estimate = elapsed / max(exceeded.layers_done, 1) * config.num_hidden_layers
                    stopped[variant] = {
                        "stopped_after_s": elapsed,
                        "layers_done": exceeded.layers_done,
                        "estimated_s": estimate,
                    }
    rows, cols = config.grid_size
    return {
        "image_size": list(config.image_size),
        "patch_size": config.patch_size,
        "tokens": rows * cols,
        "variants": {
            variant: stopped.get(variant) or {"best_s": min(runs[variant]), "runs_s": runs[variant]}
            for variant in models
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="forwards per variant; the best is reported")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds before a forward is stopped")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "attention.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load_at_start = os.getloadavg()
    results = {}
    for geometry, geometry_overrides in GEOMETRIES.items():
        results[geometry] = measure_geometry(geometry_overrides, args.repeats, args.time_limit)
        for variant, result in results[geometry]["variants"].items():
            print(f"{geometry:8s} {variant:16s} {result}", flush=True)

    defaults = TopViTConfig()
    layers = defaults.num_hidden_layers
    lines = [
        f"Forward of {BATCH} crops, TopViTForImageClassification (width {defaults.hidden_size}, {layers} layers, "
        f"{defaults.num_attention_heads} heads), eval, no_grad, {args.threads} threads, best of up to {args.repeats} "
        f"(load average {load_at_start[0]:.1f} at start).",
        "",
        "| geometry | tokens | variant | forward | vs softmax |",
        "|---|---|---|---|---|",
    ]
    for geometry, entry in results.items():
        softmax = entry["variants"]["softmax"]
        for variant, result in entry["variants"].items():
            # A stopped forward enters the ratio with its extrapolated time, marked "~".
            approximate = "~" if "best_s" not in result or "best_s" not in softmax else ""
            ratio = result.get("best_s", result.get("estimated_s")) / softmax.get("best_s", softmax.get("estimated_s"))
            ratio = f"{approximate}{ratio:.2f}x"
            if "best_s" in result:
                forward = f"{result['best_s'] * 1000:.0f} ms"
            else:
                forward = (
                    f"> {args.time_limit:.0f} s (stopped after {result['layers_done']} of {layers} layers, "
                    f"~{result['estimated_s']:.0f} s estimated)"
                )
            shape = "x".join(map(str, entry["image_size"]))
            lines.append(
                f"| {geometry} ({shape}, patch {entry['patch_size']}) | {entry['tokens']} | {variant} | {forward} | "
                f"{ratio} |"
            )
    table = "\n".join(lines)
    print("\n" + table)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "batch": BATCH,
        "threads": args.threads,
        "repeats": args.repeats,
        "time_limit_s": args.time_limit,
        "torch": torch.__version__,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "geometries": results,
        "table_markdown": table,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
