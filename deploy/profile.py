"""The profile: one YAML file per deployment, validated into a frozen `Profile`.

Loading reads like a spec: read bytes -> parse YAML (syntax errors and duplicate keys with
their lines) -> validate with pydantic (every error at once, dotted key paths, "did you
mean") -> cross-field checks. Nothing here touches anything but the profile file itself.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deploy.errors import Problem, UserError

BUILTIN_DIR = Path(__file__).parent / "profiles"
DEVICES_FILE = Path(__file__).parent / "data" / "devices.yaml"
SCHEMA_URL = "https://vllm-deploy.invalid/profile.schema.json"  # NB: only an $id; the schema ships in schema/

Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
# DNS-1123 label, for Kubernetes namespaces.
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
# A compose project and image name; Kubernetes names take it with "_" turned into "-".
PROFILE_NAME = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"
ProfileName = Annotated[str, Field(pattern=PROFILE_NAME, max_length=40)]
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# A registry host (with an optional port) and path, lowercase, as image references require.
REGISTRY_PATH = r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
EnvName = Annotated[str, Field(pattern=ENV_NAME)]
RegistryPath = Annotated[str, Field(pattern=REGISTRY_PATH, max_length=200)]
# What each pattern means, in words, for error messages.
PATTERN_WORDS = {
    DNS_LABEL: "lowercase letters, digits and '-', starting and ending with a letter or digit",
    PROFILE_NAME: "lowercase letters, digits, '-' and '_', starting and ending with a letter or digit",
    ENV_NAME: "an environment variable name: capital letters, digits and '_', e.g. VLLM_API_KEY",
    REGISTRY_PATH: "a registry host and path in lowercase, e.g. registry.example.com/ml or 127.0.0.1:5000/team",
}


# Flags the profile models; extra-args may not repeat them (two sources of truth disagree silently).
MODELLED_FLAGS = {
    "--model": "model.source",
    "--served-model-name": "model.served-name",
    "--revision": "model.revision",
    "--host": "server.bind-address",
    "--port": "server.port",
    "--api-key": "api-key.env",
    "--dtype": "engine.dtype",
    "--max-model-len": "engine.max-model-len",
    "--gpu-memory-utilization": "engine.gpu-memory-utilization",
    "--trust-remote-code": "engine.trust-remote-code",
    "--tensor-parallel-size": "engine.tensor-parallel-size",
    "--max-num-seqs": "engine.max-num-seqs",
    "--enforce-eager": "engine.enforce-eager",
    "--limit-mm-per-prompt": "engine.limit-mm-per-prompt",
    "--kv-cache-memory-bytes": "engine.kv-cache-space-gib",
    "--allowed-media-domains": "media.allowed-domains",
}
# vLLM's short aliases for the same flags.
FLAG_ALIASES = {"-tp": "--tensor-parallel-size", "-q": "--quantization"}


def canonical_flag(arg: str) -> str:
    """`--gpu_memory_utilization=1` -> `--gpu-memory-utilization` (vLLM accepts both spellings)."""
    flag = arg.split("=", 1)[0]
    flag = FLAG_ALIASES.get(flag, flag)
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Section(BaseModel):
    # NB: keys are kebab-case like vLLM's own flags; unknown keys are errors, never ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_kebab, validate_default=True)


class ModelSource(_Section):
    """Which weights to serve and where they live."""

    source: str = Field(
        description="Hugging Face id (org/name) or an absolute path, e.g. /root/ld/ld_model_pretrained/Minicpmv2_6",
        min_length=1,
    )
    storage: Literal["host", "hub", "tiny"] | None = Field(
        None,
        description="host: a local directory mounted read-only; hub: downloaded into a cache volume; "
        "tiny: a random-weight test VLM fabricated into the image at build time (no download). "
        "Default: host for absolute paths, hub otherwise.",
    )
    served_name: str | None = Field(None, description="Name clients pass as `model`. Default: the source, as vLLM does.")
    revision: str | None = Field(None, description="Hub commit or tag to pin (recommended with trust-remote-code).")


class Engine(_Section):
    """vLLM engine settings. The first four are required: they are the seed's flags."""

    dtype: Dtype
    max_model_len: int = Field(gt=0)
    gpu_memory_utilization: float = Field(gt=0, le=1, description="Fraction of each GPU's memory vLLM may use.")
    trust_remote_code: bool
    tensor_parallel_size: int = Field(1, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    enforce_eager: bool = False
    limit_mm_per_prompt: dict[Literal["image", "video", "audio"], Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="Most items per modality in one prompt, e.g. {image: 2}."
    )
    kv_cache_space_gib: int | None = Field(
        None, ge=1, description="CPU only: KV-cache size (VLLM_CPU_KVCACHE_SPACE). Required on CPU."
    )
    extra_args: list[str] = Field(
        default_factory=list, description="More vLLM flags, e.g. [--enable-prefix-caching]. Not for modelled ones."
    )

    @field_validator("extra_args")
    @classmethod
    def _not_modelled(cls, args: list[str]) -> list[str]:
        # Two sources of truth for one flag would disagree silently: the profile field must win, visibly.
        clashes = [f"{arg!r} duplicates {MODELLED_FLAGS[canonical_flag(arg)]}" for arg in args if canonical_flag(arg) in MODELLED_FLAGS]
        if clashes:
            raise ValueError("; ".join(clashes) + ": set the profile field instead")
        return args


class ApiKey(_Section):
    """Where the API key comes from. The value itself never appears in a profile or a rendered file."""

    env: EnvName = Field("VLLM_API_KEY", description="Environment variable (or .env entry) holding the key.")


class Image(_Section):
    device: Literal["cuda", "cpu"] = "cuda"
    base: str | None = Field(None, description="Base image, pinned. Default per device from deploy/data/devices.yaml.")
    extra_pip: list[str] = Field(default_factory=list, description="Extra pip requirements baked into the image.")
    ca_bundle: str | None = Field(
        None,
        description="CPU image: a host CA bundle pip trusts during the build (TLS-intercepting proxies), "
        "passed as a BuildKit secret, never stored in a layer, e.g. /etc/ssl/certs/ca-certificates.crt.",
    )
    registry: RegistryPath | None = Field(
        None,
        description="Registry and path clusters pull built images from, e.g. registry.example.com/ml. Built "
        "images are named <registry>/<name>:<hash> (`vllm-deploy push` pushes them); without it "
        "localhost/vllm-deploy/<name>:<hash>, which never resolves to Docker Hub.",
    )

    @field_validator("base")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value.rsplit("/", 1)[-1] or value.endswith(":latest")):
            raise ValueError(f"expected a pinned image reference like vllm/vllm-openai:v0.32.0, got {value!r}")
        return value


class Resources(_Section):
    gpus: int | None = Field(None, ge=0, description="GPUs per replica. Default: tensor-parallel-size (cuda), 0 (cpu).")
    shm_size_gib: int = Field(8, ge=1, description="Shared memory for vLLM's workers (/dev/shm).")
    memory_gib: int = Field(32, ge=1, description="Memory limit of the container.")
    cpus: int | None = Field(
        None, ge=1,
        description="CPU cores, reserved and capped (compose cpus, Kubernetes request and limit). Default: no cap; "
        "Kubernetes still requests 4 cores per GPU (2 on cpu), and sets no limit, which would throttle vLLM.",
    )


class Server(_Section):
    port: int = Field(8000, ge=1, le=65535)
    bind_address: str = Field("127.0.0.1", description="Host address compose publishes the port on.")
    health_interval_seconds: int = Field(10, ge=1, le=300, description="How often compose probes /health.")


class Kubernetes(_Section):
    namespace: DnsLabel = Field("vllm", description="Namespace of every object (not `default`: keep workloads apart).")
    create_namespace: bool = Field(
        True, description="Render the Namespace object too; false where it exists and you may not create namespaces."
    )
    replicas: int = Field(1, ge=0)
    storage_class: str | None = None
    storage_size_gib: int = Field(50, ge=1, description="Size of the model cache volume (hub storage).")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels the pod needs. Required with host storage (the model is only on some nodes), "
        "e.g. {vllm-deploy/model: minicpm-v-2_6} after `kubectl label node NODE vllm-deploy/model=minicpm-v-2_6`.",
    )
    affinity: dict[str, Any] | None = Field(
        None, description="A pod affinity block (Kubernetes' own schema), an alternative to node-selector."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="e.g. [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}] for tainted GPU nodes.",
    )
    runtime_class_name: str | None = Field(
        None,
        description="RuntimeClass of the pod, e.g. nvidia where the GPU operator installs one and the "
        "container runtime's default is not NVIDIA's.",
    )
    load_budget_seconds: int = Field(
        900, ge=30, description="How long loading the model may take before the pod is restarted (startupProbe)."
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    network_policy_from: dict[str, str] | None = Field(
        None,
        description="If set, a NetworkPolicy lets only pods with these labels (same namespace) reach the "
        "server port, e.g. {app.kubernetes.io/name: gateway}.",
    )


class Media(_Section):
    """Image URLs are fetched by the server: bound where it may fetch from and for how long."""

    allowed_domains: list[str] = Field(
        default_factory=list,
        description="Hosts image URLs may point at (vLLM --allowed-media-domains). Empty: any host.",
    )
    fetch_timeout_seconds: int = Field(
        5, ge=1, le=600, description="Per-attempt timeout fetching an image URL (VLLM_IMAGE_FETCH_TIMEOUT)."
    )
    fetch_max_retries: int = Field(
        1, ge=0, le=10,
        description="Retries of a failed image fetch (VLLM_MEDIA_FETCH_MAX_RETRIES). vLLM's default 3 "
        "lets one unreachable URL hold a request for about two minutes.",
    )


class Smoke(_Section):
    stop_token_ids: list[int] = Field(default_factory=lambda: [151645, 151643])
    prompt: str = "请描述这张图片"
    image_url: str = "https://air-example-data-2.s3.us-west-2.amazonaws.com/vllm_opensource_llava/stop_sign.jpg"


class Profile(_Section):
    """One deployment. Defaults live here and nowhere else."""

    name: ProfileName = Field(description="Names the compose project, the image and the Kubernetes objects.")
    description: str = ""
    model: ModelSource
    engine: Engine
    api_key: ApiKey
    image: Image = Image()
    resources: Resources = Resources()
    server: Server = Server()
    kubernetes: Kubernetes = Kubernetes()
    media: Media = Media()
    smoke: Smoke = Smoke()

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_by_reference(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "expected a reference like {env: VLLM_API_KEY}, not the key itself; "
                "put the value in the environment or a git-ignored .env file"
            )
        return value


# ---------------------------------------------------------------------------------------------
# Reading YAML


class _Document:
    """A parsed YAML mapping plus the line of every key path, for messages that point at lines."""

    def __init__(self, data: Any, lines: dict[tuple[str | int, ...], int]):
        self.data = data
        self.lines = lines

    def line_of(self, loc: tuple[str | int, ...]) -> int:
        # Walk up to the nearest located ancestor: a missing key is reported at its parent.
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 0)


def _parse_yaml(text: str) -> tuple[_Document, list[Problem]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise UserError("profile is not valid YAML", [Problem(line, "", f"YAML syntax error: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise UserError("profile is not valid YAML", [Problem(0, "", f"YAML error: {exc}")]) from None

    problems: list[Problem] = []
    lines: dict[tuple[str | int, ...], int] = {}

    def walk(n: yaml.Node, loc: tuple[str | int, ...]) -> None:
        lines[loc] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in n.value:
                key = key_node.value
                here = key_node.start_mark.line + 1
                if key in seen:
                    path = ".".join(str(p) for p in (*loc, key))
                    problems.append(Problem(here, path, f"duplicate key (first defined on line {seen[key]})"))
                seen.setdefault(key, here)
                walk(value_node, (*loc, key))
                lines[(*loc, key)] = here
        elif isinstance(n, yaml.SequenceNode):
            for index, item in enumerate(n.value):
                walk(item, (*loc, index))

    if node is not None:
        walk(node, ())
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise UserError("profile is not valid YAML", [Problem(line, "", f"YAML error: {exc.problem}")]) from None
    finally:
        loader.dispose()
    return _Document(data, lines), problems


# ---------------------------------------------------------------------------------------------
# Turning pydantic errors into sentences


def _section_class(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class at `loc` (alias path), to list the keys allowed there."""
    cls: type[BaseModel] = Profile
    for part in loc:
        field = next((f for n, f in cls.model_fields.items() if _kebab(n) == part), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        cls = annotation
    return cls


def _expected(loc: tuple[str | int, ...]) -> str:
    """What a missing key should hold, from the model's own annotation."""
    cls = _section_class(loc[:-1])
    field = next((f for n, f in (cls.model_fields.items() if cls else ()) if _kebab(n) == loc[-1]), None)
    annotation = getattr(field, "annotation", None)
    if annotation is None:
        return "a value"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return words.get(annotation, "a value")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({type(value).__name__})"


def _sentence(error: dict[str, Any]) -> str:
    kind, loc, got = error["type"], error["loc"], error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"required key is missing; expected {_expected(loc)}"
    if kind == "extra_forbidden":
        cls = _section_class(loc[:-1])
        allowed = sorted(_kebab(n) for n in cls.model_fields) if cls else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key{hint}; expected one of: {', '.join(allowed)}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {_show(got)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {_show(got)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_show(got)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_show(got)}"
    if kind in ("string_type",):
        return f"expected a string, got {_show(got)}"
    if kind in ("list_type",):
        return f"expected a list, got {_show(got)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_show(got)}"
    if kind == "greater_than":
        return f"expected a number greater than {ctx['gt']}, got {_show(got)}"
    if kind == "greater_than_equal":
        return f"expected a number of at least {ctx['ge']}, got {_show(got)}"
    if kind == "less_than_equal":
        return f"expected a number of at most {ctx['le']}, got {_show(got)}"
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx["pattern"], f"a string matching {ctx['pattern']}")
        return f"expected {words}, got {_show(got)}"
    if kind == "string_too_long":
        return f"expected at most {ctx['max_length']} characters, got {len(got)}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {_show(got)}"


def _dotted(loc: tuple[str | int, ...]) -> str:
    # NB: pydantic marks a bad mapping key with a "[key]" step; the key itself already names the place.
    return ".".join(str(p) for p in loc if p != "[key]")


# ---------------------------------------------------------------------------------------------
# Cross-field checks: only meaningful once every field has the right type.

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _cross_checks(p: Profile) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    storage = model_storage(p)
    absolute = p.model.source.startswith("/")
    if storage in ("host", "tiny") and not absolute:
        found.append((("model", "source"), f"storage {storage!r} needs an absolute path, got {p.model.source!r}"))
    if storage == "hub" and not HUB_ID.match(p.model.source):
        found.append((("model", "source"), f"expected a Hugging Face id like Qwen/Qwen2.5-VL-7B-Instruct, got {p.model.source!r}"))
    if p.model.revision and storage != "hub":
        found.append((("model", "revision"), "a revision pins hub downloads; it needs storage 'hub'"))
    gpus = gpu_count(p)
    if storage == "host" and not (p.kubernetes.node_selector or p.kubernetes.affinity):
        found.append((("kubernetes", "node-selector"),
                      f"required with host storage: {p.model.source} exists only on the nodes you copied it to, and "
                      "a pod scheduled elsewhere fails to start; label those nodes and select them, e.g. "
                      f"{{vllm-deploy/model: {p.name}}} (or set kubernetes.affinity)"))
    if p.image.device == "cuda":
        most = device_limits()["max-gpu-memory-utilization"]
        if p.engine.gpu_memory_utilization > most:
            found.append((("engine", "gpu-memory-utilization"),
                          f"at most {most} on cuda, got {p.engine.gpu_memory_utilization}: vLLM refuses to start when "
                          "total memory × utilization exceeds the memory free at start-up, and the CUDA context "
                          "alone takes some, so 1 (the guide's value) never starts; use "
                          f"{most} for a GPU of its own, less if other processes share it"))
        if gpus < p.engine.tensor_parallel_size:
            found.append(
                (("resources", "gpus"), f"tensor-parallel-size {p.engine.tensor_parallel_size} needs at least as many GPUs, got {gpus}")
            )
        if p.engine.kv_cache_space_gib is not None:
            found.append((("engine", "kv-cache-space-gib"), "only for device cpu; on cuda use gpu-memory-utilization"))
    else:
        if gpus:
            found.append((("resources", "gpus"), f"device cpu takes no GPUs, got {gpus}"))
        if p.engine.tensor_parallel_size != 1:
            found.append((("engine", "tensor-parallel-size"), "device cpu serves with tensor-parallel-size 1"))
        if p.engine.kv_cache_space_gib is None:
            # NB: on CPU gpu-memory-utilization reserves that share of the machine's RAM (0.92 fails).
            found.append((("engine", "kv-cache-space-gib"), "required for device cpu, e.g. 1 (GiB)"))
    if p.resources.shm_size_gib > p.resources.memory_gib and p.image.device == "cpu":
        found.append((("resources", "shm-size-gib"), "larger than memory-gib"))
    return found


def device_limits() -> dict[str, Any]:
    """The CUDA facts profile validation needs (deploy/data/devices.yaml)."""
    return yaml.safe_load(DEVICES_FILE.read_text(encoding="utf-8"))["cuda"]


def model_storage(p: Profile) -> str:
    return p.model.storage or ("host" if p.model.source.startswith("/") else "hub")


def gpu_count(p: Profile) -> int:
    if p.resources.gpus is not None:
        return p.resources.gpus
    return p.engine.tensor_parallel_size if p.image.device == "cuda" else 0


# ---------------------------------------------------------------------------------------------
# Entry points


def builtin_names() -> list[str]:
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def locate(ref: str) -> Path:
    """A built-in profile name or a path to a YAML file."""
    path = Path(ref)
    if ref in builtin_names():
        return BUILTIN_DIR / f"{ref}.yaml"
    if path.is_dir():
        raise UserError(f"{ref}: is a directory; expected a profile YAML file or one of: {', '.join(builtin_names())}")
    if not path.exists():
        close = difflib.get_close_matches(ref, builtin_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"{ref}: no such profile file or built-in profile{hint}; built-in profiles: {', '.join(builtin_names())}"
        )
    return path


def write_variant(builtin: str, path: Path, changes: dict[str, Any]) -> Path:
    """Write a copy of a built-in profile with some keys changed (nested mappings merge) to `path`.

    For runs that must not collide with the built-in's own stack: another name, another port.
    """
    data = yaml.safe_load((BUILTIN_DIR / f"{builtin}.yaml").read_text(encoding="utf-8"))

    def merge(into: dict[str, Any], new: dict[str, Any]) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(data, changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def parse_profile(text: str | bytes, source: str) -> Profile:
    """Validate profile text; raise one UserError listing every problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{source}: profile is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
            ) from None
    try:
        document, problems = _parse_yaml(text)
    except UserError as exc:
        raise UserError(f"{source} is invalid:", exc.problems, source) from None
    if document.data is None:
        raise UserError(f"{source} is invalid:", [Problem(0, "", "profile is empty; expected a mapping with at least name, model, engine, api-key")], source)
    if not isinstance(document.data, dict):
        raise UserError(f"{source} is invalid:", [Problem(1, "", f"expected a mapping of keys at the top level, got {_show(document.data)}")], source)
    profile = None
    try:
        profile = Profile.model_validate(document.data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.append(Problem(document.line_of(loc), _dotted(loc), _sentence(error)))
    if profile is not None:
        for loc, message in _cross_checks(profile):
            key = tuple(int(p) if p.isdigit() else p for p in loc)
            problems.append(Problem(document.line_of(key), _dotted(loc), message))
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise UserError(f"{source} is invalid ({count}):", problems, source)
    assert profile is not None
    return profile


def load_profile(ref: str) -> Profile:
    path = locate(ref)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{ref}: cannot read profile: {exc.strerror}") from None
    return parse_profile(raw, str(path))


def json_schema() -> dict[str, Any]:
    schema = Profile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_URL
    return schema
