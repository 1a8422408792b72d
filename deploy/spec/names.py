"""Names and paths refused by the rule of the component that reads them, not by a list of examples.

- api-key.env: not a variable the container's software reads: vLLM's own table of the variables it
  reads (deploy/data/vllm-envs.json, generated from vllm/envs.py: `make vllm-envs`), every VLLM_*
  name (vLLM's and its router's), and the families of names Hugging Face, Python, pip, TLS and proxy
  clients, CUDA/NCCL/PyTorch/OpenMP, the loader and the shell, Kubernetes and Compose read.
- model.source (host storage): not a system directory of the host, after lexical normalisation.
- image.registry: a registry host by Docker's own rule, never a Docker Hub account.
"""

from __future__ import annotations

import fnmatch
import re

from deploy.facts import vllm_variables
from deploy.spec.redact import looks_secret

DEFAULT_KEY_VARIABLE = "VLLM_API_KEY"  # vLLM's own key variable: the one name of its table a key may use

SHELL_AND_LOADER = "the shell, the loader and the C library"
# Exact names, and who reads them.
READ_BY_NAME = {
    **dict.fromkeys(
        (
            "PATH",
            "HOME",
            "USER",
            "LOGNAME",
            "SHELL",
            "PWD",
            "TMPDIR",
            "HOSTNAME",
            "LANG",
            "LANGUAGE",
            "TZ",
            "TERM",
            "IFS",
            "ENV",
            "BASH_ENV",
            "CDPATH",
        ),
        SHELL_AND_LOADER,
    ),
    **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"), "HTTP clients take it as their proxy"),
    **dict.fromkeys(
        ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
        "TLS clients take it as the CAs to trust",
    ),
    "HUGGING_FACE_HUB_TOKEN": "Hugging Face",
}
# Name prefixes, and who reads them. NB: families, not lists: a new HF_ or NCCL_ setting is covered already.
READ_BY_PREFIX = (
    ("VLLM_", "vLLM and its router read VLLM_ names, and a newer vLLM may read any of them"),
    ("HF_", "Hugging Face"),
    ("HUGGING_FACE_", "Hugging Face"),
    ("TRANSFORMERS_", "transformers"),
    ("TOKENIZERS_", "tokenizers"),
    ("PYTHON", "Python"),
    ("PIP_", "pip"),
    ("CUDA_", "CUDA"),
    ("NVIDIA_", "the NVIDIA container runtime"),
    ("NCCL_", "NCCL"),
    ("TORCH", "PyTorch"),
    ("OMP_", "OpenMP"),
    ("KMP_", "OpenMP"),
    ("MKL_", "MKL"),
    ("TRITON_", "Triton"),
    ("FLASHINFER_", "FlashInfer"),
    ("LD_", SHELL_AND_LOADER),
    ("LC_", SHELL_AND_LOADER),
    ("XDG_", "every program that keeps a cache or config"),
    ("KUBERNETES_", "Kubernetes sets these in every pod"),
    ("COMPOSE_", "Docker Compose reads these from the same .env file"),
    ("DOCKER_", "the Docker CLI and Compose read these"),
    ("BUILDKIT_", "BuildKit"),
)

# System directories of a host: mounted into a container they hand it the host itself. /lib* by glob.
SYSTEM_DIRECTORIES = {
    "/": "the host's whole filesystem",
    "/proc": "the host's kernel interfaces",
    "/sys": "the host's kernel interfaces",
    "/dev": "the host's devices",
    "/run": "the host's runtime sockets, Docker's and containerd's among them",
    "/var/run": "the host's runtime sockets, Docker's and containerd's among them",
    "/etc": "the host's configuration and credentials",
    "/boot": "the host's kernels",
    "/usr": "the host's programs",
    "/bin": "the host's programs",
    "/sbin": "the host's programs",
    "/var/lib/docker": "every container's files",
    "/var/lib/containerd": "every container's files",
    "/var/lib/kubelet": "every pod's volumes and secrets",
}
LIBRARIES = "/lib*"


def variable_reader(name: str) -> str | None:
    """Who reads the variable `name` inside the container or while deploying; None when nothing does."""
    upper = name.upper()  # NB: proxies and some others are read in either case
    if upper == DEFAULT_KEY_VARIABLE:
        return None
    if name in vllm_variables():
        return "vLLM, by its own table: deploy/data/vllm-envs.json"
    if upper in READ_BY_NAME:
        return READ_BY_NAME[upper]
    return next((who for prefix, who in READ_BY_PREFIX if upper.startswith(prefix)), None)


def key_variable_problem(name: str) -> str | None:
    who = variable_reader(name)
    if who is None:
        return None
    # NB: a variable name is words joined by '_' (HF_TOKEN is fine to show); a pasted key is a long unbroken run.
    shown = name if len(name) <= 60 and not re.search(r"[A-Za-z0-9]{20,}", name) else "this name"
    return (
        f"{shown} is a variable the container or vLLM reads for something else ({who}); name one of your "
        f"own, e.g. {DEFAULT_KEY_VARIABLE} or MY_MODEL_KEY"
    )


def normalised(path: str) -> str:
    """The absolute path lexically: `//` and `/./` collapsed, `..` applied, no trailing slash. NB: lexical only:
    the path is on the nodes, not here, so symlinks cannot be followed (a mount follows them there)."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _system(path: str) -> str | None:
    """The system directory `path` (normalised) is or is under."""
    if path == "/":
        return "/"
    found = [d for d in SYSTEM_DIRECTORIES if d != "/" and (path == d or path.startswith(d + "/"))]
    first = "/" + path.split("/")[1]
    if fnmatch.fnmatchcase(first, LIBRARIES):
        found.append(first)
    return max(found, key=len) if found else None


def system_directory_problem(path: str) -> str | None:
    """Why a host directory may not be mounted as the model, or None."""
    norm = normalised(path)
    subject = repr(path) if not looks_secret(path) else "the path"
    lead = subject if norm == (path.rstrip("/") or "/") or looks_secret(path) else f"{subject} (that is {norm})"
    fix = "put the model in a directory of its own, e.g. /models/<name> or /srv/models/<name>"
    system = _system(norm)
    if system is not None:
        what = SYSTEM_DIRECTORIES.get(system, "the host's system libraries")
        where = "is" if system == norm else f"is under {system},"
        return f"{lead} {where} a system directory ({what}): host storage mounts it into the container; {fix}"
    holds = [d for d in SYSTEM_DIRECTORIES if d != "/" and d.startswith(norm + "/")]  # NB: the table's order
    if holds:
        return (
            f"{lead} holds {holds[0]}, a system directory ({SYSTEM_DIRECTORIES[holds[0]]}): host storage mounts "
            f"all of it into the container; {fix}"
        )
    if any(part in (".", "..") for part in path.split("/")):
        # NB: Kubernetes refuses '..' in a hostPath (validatePathNoBacksteps); '.' only hides where it points.
        shown = f", e.g. {norm}" if not looks_secret(norm) else ""
        return f"write the path without '.' or '..' parts (Kubernetes refuses '..' in a hostPath){shown}"
    return None


def registry_problem(registry: str) -> str | None:
    """Docker's rule (distribution/reference, splitDockerDomain): the part before the first '/' is a registry host
    only if it holds a '.' or a ':' or is `localhost`; anything else names an account on Docker Hub."""
    first = registry.split("/", 1)[0]
    if "." in first or ":" in first or first == "localhost":
        return None
    shown = repr(first) if not looks_secret(first) else "its first part"
    return (
        f"expected a registry host first (a name with a '.', a host:port, or localhost), e.g. "
        f"registry.example.com/ml, localhost:5000/ml or 127.0.0.1:5000/team: Docker reads {shown} as an "
        "account on Docker Hub, so the images would be pushed to and pulled from docker.io, where anyone can "
        "register that name"
    )
