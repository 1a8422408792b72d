"""The runtime: what drives Docker, mirroring the core's one-way flow. Each module imports only those
listed before it.

process     run a command, stream its output, wait_until a condition; everything above takes a Runner
http        bounded HTTP under every request: a total deadline, a body cap, a check of the shape
net         loopback helpers: a free port, whether a port is taken, waiting for a health endpoint
docker      DockerDaemon (queries through the Docker SDK) and Compose (compose and builds through the CLI)
envfile     the stack's .env, and the API key as compose will see it
images      the registry-free base image, the CPU torch wheel, the build, push
hub         the hub as huggingface_hub sees it: endpoint, cache, a model's files and sizes, its errors as UserError
preflight   checks that only read: gather the host's facts, judge each (a verdict and a fix)
fetch       `vllm-deploy fetch`: a hub model onto this host with snapshot_download, resumed, disk checked first
router      the running router's admin API: its replicas, taking one out and back
stack       a profile's compose stack: preflight -> render -> build -> start -> wait; rollout; down
status      `vllm-deploy status`: one screen from the profile's Prometheus
smoke       the smoke suite (smoke_tests/) run as a child pytest against an endpoint, as a table
"""
