"""Benchmarks: load (the one load generator), baseline (the bare vLLM process), suite (`make bench`),
report (BENCHMARKS.md from the figures). Figures are ratios against the baseline measured in the same
run, or counts: timings on a shared 2-core machine are noisy."""
