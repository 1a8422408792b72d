"""Ports, paths, names and label keys: each written once, here. A change here reaches every file that uses it.

NB: the engine's port and the router front's are both CONTAINER_PORT on purpose: the router reaches the engines
on it and clients reach the front on it, whichever is in front. Changing it changes both, consistently.
"""

from __future__ import annotations

# Ports inside the containers (the profile's server.port and monitoring.port are the published ones).
CONTAINER_PORT = 8000  # vLLM's server, and the router's front (haproxy): clients, Services and probes
ROUTER_PORT = 8001  # the router's own, bound to 127.0.0.1: admin routes are reachable inside the container only
ROUTER_METRICS_PORT = 29000
PROMETHEUS_PORT = 9090

# Paths inside the containers.
HUB_CACHE_DIR = "/models/hf-cache"
# A host directory of weights is mounted here, whatever its path on the host: a path under /root (the guide's)
# cannot be traversed by a non-root uid in the image (/root is 0700), and the served name keeps the host path.
HOST_MODEL_DIR = "/models/weights"
TWIN_TINY_MODEL_DIR = "/models/tiny-vlm"  # a twin's image holds the tiny test VLM here, as the tiny profiles' do
WRITABLE_CACHE_DIR = "/var/cache/vllm"
TMP_DIR = "/tmp"
EDGE_DIR = "/etc/vllm-deploy/python"  # the key-check middleware, on PYTHONPATH
GENERATION_DIR = "/etc/vllm-deploy/generation"  # the generation_config.json vLLM is pointed at
TOOL_DIR = "/opt/vllm-deploy"  # our scripts in the images we build
ROUTER_LAUNCHER = f"{TOOL_DIR}/router_launch.py"
FRONT_CONFIG = f"{TOOL_DIR}/router-haproxy.cfg"
FRONT_BINARY = "/usr/sbin/haproxy"
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"

# HTTP paths.
HEALTH_PATH = "/health"  # vLLM's: no key needed
ROUTER_READINESS_PATH = "/readiness"  # the router's public routes (through the front, no key)
ROUTER_LIVENESS_PATH = "/liveness"

# Names.
ENGINE_NAME = "vllm"  # the engine's container: its compose service, its Kubernetes container and label
ROUTER_NAME = "vllm-router"
RUN_AS_NAME = "vllm"  # USER and LOGNAME of the engine: its uid has no passwd entry in the image
PART_OF = "vllm-deploy"

# Kubernetes' recommended label keys (targets/kubernetes.py spells the labels with them).
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
VERSION_LABEL = "app.kubernetes.io/version"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
