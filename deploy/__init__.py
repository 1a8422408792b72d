"""vllm-deploy: one YAML profile -> Dockerfile, compose file and Kubernetes manifests for vLLM."""

__version__ = "0.1.0"
