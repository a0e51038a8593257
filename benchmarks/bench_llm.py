"""The instruction audit of SmolLM2-135M-Instruct on the built-in tasks (900 training pairs, 20% of the responses
planted wrong, 100 clean test pairs): detection quality of every score, class detection, wall time and peak memory.

Prints, measured in one run:

* AUROC / average precision / precision at the flag budget of each score on the planted wrong responses;
* class-detection AUC and recall (the paper's Table 3 measure) of the influence on the 100 test prompts;
* wall time and peak RSS of the first audit (empty cache: the GGUF dequantised, the frozen states computed, LoRA
  fine-tuned, gradients projected) and of a rerun with another score (everything read from the cache).

    .venv/bin/python benchmarks/bench_llm.py                 # targets: first audit ≤ 3 min, ≤ 3 GB; rerun seconds
    .venv/bin/python benchmarks/bench_llm.py --limit 300     # a quicker look
    .venv/bin/python benchmarks/bench_llm.py --threads 1     # torch threads (a loaded machine: 1 is faster)

Report the machine load (``uptime``) beside the times: the CPU is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="training pairs (default all 900)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--dim", type=int, default=4096, help="projected gradient dimension")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder (first load included)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ogaudit.pipeline.run import AuditSettings, audit

    cache = args.cache_dir or tempfile.mkdtemp(prefix="ogaudit-bench-llm-")
    settings = AuditSettings(
        model="smollm2",
        detector="iforest-per-class",
        limit=args.limit,
        epochs=args.epochs,
        projection_dim=args.dim,
        map_method="pca",
        seed=args.seed,
    )
    print(f"load before: {os.getloadavg()[0]:.1f}; torch threads {torch.get_num_threads()}; cache {cache}")
    start = time.perf_counter()
    result = audit("instruct-tasks", settings, cache_dir=cache)
    first = time.perf_counter() - start
    peak_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load_after = os.getloadavg()[0]
    start = time.perf_counter()
    again = audit("instruct-tasks", AuditSettings(**{**settings.to_dict(), "detector": "loss"}), cache_dir=cache)
    rerun = time.perf_counter() - start
    model = result.record["model"]
    print(
        f"\npairs {len(result.scores)}, planted wrong {int(result.scores['is_noisy'].sum())}, "
        f"gradient dim {model['gradient_dim']}, epochs {model['epochs']}, training loss {model['history']}"
    )
    print(f"\nscore               AUROC    AP     precision@budget ({settings.budget:.0%})")
    for name, metrics in model["score_metrics"].items():
        print(
            f"{name:18s} {metrics['auroc']:.3f}   {metrics['average_precision']:.3f}   "
            f"{metrics['precision_at_budget']:.3f}"
        )
    print("\nclass detection (influence on the 100 test prompts):")
    for name, found in (model["class_detection"] or {}).items():
        print(f"  {name:14s} AUC {found['auc']:.3f}   recall {found['recall']:.3f}")
    print(
        f"\nfirst audit: {first:.1f} s (stages {json.dumps(result.record['timings_s'])}), peak RSS {peak_first:.2f} GB"
    )
    print(f"rerun with another score: {rerun:.1f} s (stages {json.dumps(again.record['timings_s'])})")
    print(f"load average: {load_after:.1f} after the first audit, {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
