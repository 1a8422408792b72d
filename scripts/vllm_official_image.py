"""Write what vLLM's official image is, from the Dockerfile it is built from: docker/Dockerfile in the
sdist of the pinned release, its `vllm-openai` target (`vllm/vllm-openai:vX.Y.Z`) and the opt-in
`vllm-openai-nonroot` one.

    python scripts/vllm_official_image.py [SDIST] > deploy/data/vllm-official-image.json   (make vllm-official-image)

Without SDIST (a vllm-X.Y.Z.tar.gz) it downloads the sdist of the pinned version (deploy/data/devices.yaml,
cuda vllm-version) by the URL PyPI's simple API gives. Either way the archive must have the sha256 pinned
here for that version (a new release: check the hash PyPI lists, add it to SDIST_SHA256).

Per target: the stages it is built through, the final base image (ARG defaults substituted), entrypoint,
cmd, user (null: none set, so Docker runs it as root), workdir and the user in effect when it was set
(Docker makes a missing workdir as that user), the python3 the image links and the PEP 668 markers it
removes, the users it creates, the paths whose owner or group it changes or that it makes group-writable,
and the environment it sets (all of it lives on at run time; a reference to a variable the Dockerfile does
not define, e.g. the base image's PATH, is kept as written). Values are the Dockerfile's defaults: the
release build passes a few build args (VLLM_IMAGE_TAG, the commit; CUDA_VERSION for the -cu129 tags).

The Dockerfile is read as Docker reads it, simply: continuation lines (comment lines inside them dropped),
global ARGs, per-stage ARGs (a bare `ARG X` takes the global default), ENV inherited along FROM, `${X}`,
`${X:-word}`, `${X:+word}`. RUN lines are shell: only the commands that make users or change ownership
and modes are read (useradd, chown, chgrp, chmod, update-alternatives, rm of EXTERNALLY-MANAGED), as if
every branch ran (NB: an `if` is not evaluated).
tests/unit/test_official_image.py checks this project's choices against the file; a test checks that
regenerating it from the pinned sdist gives the committed bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# NB: the deploy package of this checkout, not whichever one the venv's editable install names (a git
# worktree shares its venv): the pinned version must be the one in this checkout's devices.yaml.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deploy.facts import device_facts
from deploy.runtime.http import MIB, fetch, pick

# The sha256 of each release's sdist, checked against PyPI's listing and the downloaded bytes.
SDIST_SHA256 = {"0.32.0": "d2c957d5eee3d0985012151315ddc62cbe0cd368fc96a5fc3510438d9dddf2ad"}
SIMPLE_API = "https://pypi.org/simple/vllm/"
SDIST_CAP = 200 * MIB
DOCKERFILE = "docker/Dockerfile"
TARGETS = ("vllm-openai", "vllm-openai-nonroot")
CHMOD_OPTIONS = {"-R", "-f", "-v", "-c", "--recursive", "--silent", "--quiet", "--verbose", "--changes"}
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
# RUN lines naming one of these are read as shell; a RUN that does and cannot be split is an error.
READ_COMMANDS = ("useradd", "chown", "chgrp", "chmod", "update-alternatives", "EXTERNALLY-MANAGED")


# ------------------------------------------------------------------------ the Dockerfile's instructions


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comment and blank lines inside them dropped."""
    found: list[tuple[str, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # NB: Docker drops these inside a continuation too
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        whole = " ".join([*pending, stripped])
        pending = []
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    if pending:
        raise ValueError("the Dockerfile ends inside a continued instruction")
    return found


def substitute(text: str, known: dict[str, str | None], shell: bool = False) -> str:
    """Docker's variable substitution: `$X`, `${X}`, `${X:-word}`, `${X:+word}` (nested). A name `known` does not
    hold (a variable of the base image) is kept as written; one it holds as None (an ARG without a value) is unset.
    `shell`: the text is a RUN line, which the shell expands: another form (`${X%%.*}`) is kept as written."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1 : index + 2] == "$":
            out.append("\\$")
            index += 2
            continue
        if char != "$":
            out.append(char)
            index += 1
            continue
        if text[index + 1 : index + 2] == "{":
            depth, end = 1, index + 2
            while end < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            if depth:
                raise ValueError(f"unclosed ${{ in {text!r}")
            body = text[index + 2 : end - 1]
            match = re.fullmatch(r"(\w+)(?::([-+])(.*))?", body, re.S)
            if not match and not shell:
                raise ValueError(f"unsupported substitution ${{{body}}}")
            name, operator, word = match.groups() if match else ("", None, "")
            if name not in known:
                out.append(text[index:end])
            else:
                value = known[name] or ""
                if operator == "-":
                    out.append(value or substitute(word, known, shell))
                elif operator == "+":
                    out.append(substitute(word, known, shell) if value else "")
                else:
                    out.append(value)
            index = end
            continue
        match = re.match(r"\$(\w+)", text[index:])
        if match and match.group(1) in known:
            out.append(known[match.group(1)] or "")
            index += match.end()
        else:
            out.append(char)
            index += 1
    return "".join(out)


def words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    return list(lexer)


@dataclass
class Stage:
    name: str
    base: str  # as written after FROM
    body: list[tuple[str, str]] = field(default_factory=list)


def stages(text: str) -> tuple[dict[str, str | None], dict[str, Stage]]:
    """The global ARGs (defaults substituted) and the stages by name (an unnamed stage by its index)."""
    global_args: dict[str, str | None] = {}
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--platform")]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(found))
            current = found[name] = Stage(name, parts[0])
        elif current is None:
            if keyword == "ARG":
                global_args.update(arg(rest, global_args, {}))
        else:
            current.body.append((keyword, rest))
    return global_args, found


def arg(rest: str, scope: dict[str, str | None], global_args: dict[str, str | None]) -> dict[str, str | None]:
    """The names an ARG instruction declares: its default, else the global one, else None (unset)."""
    declared: dict[str, str | None] = {}
    for word in words(rest):
        name, eq, default = word.partition("=")
        declared[name] = substitute(default, scope) if eq else global_args.get(name)
    return declared


# ------------------------------------------------------------------------ RUN lines as shell


def commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line (its --mount/--network flags dropped, leading assignments dropped)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    tokens = list(lexer)
    while tokens and tokens[0].startswith("--"):
        tokens.pop(0)
    found: list[list[str]] = [[]]
    for token in tokens:
        if token in SEPARATORS:
            found.append([])
        elif found[-1] or not re.fullmatch(r"\w+=.*", token, re.S):
            found[-1].append(token)
    return [c[1:] if c[:1] == ["sudo"] else c for c in found if c]


def useradd(argv: list[str]) -> dict[str, Any]:
    with_value = {"-u": "uid", "--uid": "uid", "-g": "gid", "--gid": "gid", "-d": "home", "--home-dir": "home"}
    with_value |= {"-s": "shell", "--shell": "shell", "-c": "", "--comment": "", "-G": "", "--groups": ""}
    with_value |= {"-k": "", "--skel": "", "-K": "", "--key": "", "-e": "", "-f": "", "-p": "", "--password": ""}
    user: dict[str, Any] = {}
    positional, index = [], 1
    while index < len(argv):
        word = argv[index]
        if word in with_value:
            if with_value[word]:
                user[with_value[word]] = argv[index + 1]
            index += 2
            continue
        if not word.startswith("-"):
            positional.append(word)
        index += 1
    if len(positional) != 1:
        raise ValueError(f"useradd with {len(positional)} names: {argv}")
    name = positional[0]
    return {
        "name": name,
        "uid": int(user["uid"]) if user.get("uid", "").isdigit() else user.get("uid"),
        "gid": int(user["gid"]) if user.get("gid", "").isdigit() else user.get("gid"),
        "home": user.get("home", f"/home/{name}"),
        "shell": user.get("shell"),
    }


def group_write(mode: str) -> bool | None:
    """Whether a chmod mode gives the group write (True), takes it (False) or leaves it (None). NB: `g=u` copies
    the owner's bits, and the owner of every path these are applied to can write it."""
    if mode.isdigit():
        return bool(int(mode[-2], 8) & 2) if len(mode) >= 3 else None  # owner, group, other: the group's digit
    result = None
    for clause in mode.split(","):
        match = re.fullmatch(r"([ugoa]*)([-+=])(.*)", clause)
        if not match:
            raise ValueError(f"unsupported chmod mode {mode!r}")
        who, operator, perms = match.groups()
        if who and not set(who) & {"g", "a"}:
            continue
        gives = "w" in perms or perms == "u"
        if operator == "-":
            result = False if "w" in perms else result
        elif gives or operator == "=":
            result = gives
    return result


@dataclass
class Image:
    stages: list[str] = field(default_factory=list)
    base_image: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    workdir: str | None = None
    workdir_made_as: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    alternatives: dict[str, dict[str, str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, text: str) -> None:
        if not any(word in text for word in READ_COMMANDS):
            return
        for argv in commands(text):
            self.command(argv)

    def command(self, argv: list[str]) -> None:
        # NB: chmod's options are named: a mode may start with "-" (`chmod -w`).
        flags = CHMOD_OPTIONS if argv[0] == "chmod" else None
        name, rest = argv[0], [a for a in argv[1:] if (a not in flags if flags else not a.startswith("-"))]
        if name == "useradd":
            self.users.append(useradd(argv))
        elif name == "chgrp" and rest:
            for path in rest[1:]:
                self.paths.setdefault(path, {})["group"] = rest[0]
        elif name == "chown" and rest:
            owner, _, group = rest[0].partition(":")
            for path in rest[1:]:
                self.paths.setdefault(path, {}).update({"owner": owner, **({"group": group} if group else {})})
        elif name == "chmod" and rest:
            writes = group_write(rest[0])
            for path in rest[1:]:
                if writes is not None:
                    self.paths.setdefault(path, {})["group_write"] = writes
        elif name == "update-alternatives":
            for flag, size in (("--install", 4), ("--set", 2)):
                if flag in argv:
                    values = argv[argv.index(flag) + 1 : argv.index(flag) + 1 + size]
                    if flag == "--install":
                        self.alternatives[values[1]] = {"link": values[0], "path": values[2]}
                    else:
                        self.alternatives.setdefault(values[0], {})["path"] = values[1]
        elif name == "rm":
            self.removed += [p for p in rest if p.endswith("/EXTERNALLY-MANAGED")]

    def summary(self) -> dict[str, Any]:
        python3 = self.alternatives.get("python3", {})
        version = re.search(r"python(\d+\.\d+)$", python3.get("path", ""))
        return {
            "stages": self.stages,
            "base_image": self.base_image,
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "user": self.user,
            "workdir": self.workdir,
            "workdir_made_as": self.workdir_made_as or "root",
            # `python3`, where the image links it, and the PEP 668 markers removed (pip may install system-wide).
            "python": {
                "version": version.group(1) if version else None,
                "python3": python3.get("link"),
                "path": python3.get("path"),
                "externally_managed_removed": self.removed,
            },
            "users": self.users,
            "ownership": {
                path: change
                for path, change in sorted(self.paths.items())
                if "owner" in change or "group" in change or change.get("group_write")
            },
            "env": self.env,
        }


def exec_form(rest: str) -> list[str]:
    if rest.startswith("["):
        value = json.loads(rest)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"not an exec form: {rest}")
        return value
    return ["/bin/sh", "-c", rest]


def image(text: str, target: str) -> Image:
    global_args, found = stages(text)
    chain = [target]
    while found[chain[-1]].base in found:
        chain.append(found[chain[-1]].base)
    built = Image(stages=chain)
    built.base_image = substitute(found[chain[-1]].base, global_args)
    for stage in reversed(chain):
        scope: dict[str, str | None] = {}  # NB: ARGs do not cross FROM; ENV does
        for keyword, rest in found[stage].body:
            known = {**scope, **built.env}
            if keyword == "ARG":
                scope.update(arg(rest, known, global_args))
            elif keyword == "ENV":
                built.env.update(env(rest, known))
            elif keyword == "WORKDIR":
                path = substitute(rest, known)
                built.workdir = path if path.startswith("/") else f"{built.workdir or ''}/{path}"
                built.workdir_made_as = built.user
            elif keyword == "USER":
                built.user = substitute(rest, known)
            elif keyword == "ENTRYPOINT":
                built.entrypoint, built.cmd = exec_form(rest), None
            elif keyword == "CMD":
                built.cmd = exec_form(rest)
            elif keyword == "RUN":
                built.run(substitute(rest, known, shell=True))
    return built


def env(rest: str, known: dict[str, str | None]) -> dict[str, str]:
    """NB: split into NAME=value words first, then substituted: a value with spaces stays one value."""
    if "=" not in rest.split(None, 1)[0]:  # the legacy `ENV NAME value`
        name, _, value = rest.partition(" ")
        return {name: substitute(value.strip(), known)}
    return {name: substitute(value, known) for name, _, value in (word.partition("=") for word in words(rest))}


# ------------------------------------------------------------------------ the pinned sdist


def dockerfile(archive: bytes, version: str) -> str:
    digest = hashlib.sha256(archive).hexdigest()
    if digest != SDIST_SHA256.get(version):
        raise ValueError(f"vllm-{version}.tar.gz has sha256 {digest}, not the pinned {SDIST_SHA256.get(version)}")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile(f"vllm-{version}/{DOCKERFILE}")
        if member is None:
            raise ValueError(f"no {DOCKERFILE} in vllm-{version}.tar.gz")
        return member.read().decode("utf-8")


def downloaded(version: str) -> bytes:
    """The sdist of `version`, by the URL PyPI's simple API lists, its listed sha256 checked against the pin."""
    listing = fetch("GET", SIMPLE_API, deadline=60, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = listing.ok().read(lambda data: pick(data, "files", list))
    name = f"vllm-{version}.tar.gz"
    entry = next((f for f in files if isinstance(f, dict) and f.get("filename") == name), None)
    if entry is None:
        raise ValueError(f"PyPI lists no {name}")
    if pick(entry, "hashes.sha256", str) != SDIST_SHA256.get(version):
        raise ValueError(f"PyPI lists {name} with sha256 {entry['hashes']['sha256']}, not the pinned one")
    return fetch("GET", pick(entry, "url", str), deadline=900, cap=SDIST_CAP).ok().body


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    version = str(device_facts()["cuda"]["vllm-version"])
    if version not in SDIST_SHA256:
        print(f"no sha256 pinned for vllm {version}: add PyPI's to SDIST_SHA256 in {__file__}", file=sys.stderr)
        return 2
    archive = Path(argv[0]).read_bytes() if argv else downloaded(version)
    text = dockerfile(archive, version)
    facts = {
        "vllm_version": version,
        "source": f"{DOCKERFILE} of vllm-{version}.tar.gz (sha256 {SDIST_SHA256[version]})",
        "targets": {target: image(text, target).summary() for target in TARGETS},
    }
    sys.stdout.write(json.dumps(facts, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
