"""Benchmarks. Figures are ratios against the baseline measured in the same run, or counts: timings on a
shared 2-core machine are noisy. Each module imports only those listed before it.

cgroup      a CPU cgroup of its own for the load client, so both arms of a comparison meet it alike
load        the one load generator: multimodal requests against any OpenAI-compatible endpoint
vllm_bench  `vllm bench serve` (vLLM's own serving benchmark) from the engine venv, and its result
baseline    the baseline of every ratio: `vllm serve` as a host process with the plan's flags
hub_server  a loopback server with the hub's HTTP shape, and the fetch throughput measured against it
report      BENCHMARKS.md from the figures of one run (BENCHMARKS.json)
hang        a stuck engine core made for real (SIGSTOP), and how long until it is noticed and replaced
replicas    tiny-cpu-x2's router: its overhead, a rollout under load, a replica killed or hung under load
suite       `make bench`: every figure of BENCHMARKS.md, on the tiny-cpu profile
"""
