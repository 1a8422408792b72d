# Copied by vllm-deploy from deploy/assets/router_launch.py for the image build. Do not edit: change the original.
"""Start vLLM's router (PyPI vllm-router) behind its front (haproxy) in one container, and keep both running.

    router_launch.py FRONT_ARGV... -- ROUTER_ARGS...

The router has one credential for everything, its admin routes (/add_worker, /remove_worker, …)
included, so it must listen on 127.0.0.1 only (this launcher refuses anything else); the front takes
the container's port, lets clients reach an allowlist of routes and checks their key (its
configuration says how). This launcher:
  - reads the key from VLLM_ROUTER_API_KEY (never argv) and refuses to start without one;
  - starts the front with the key's digest (sha256 of "Bearer <key>") in VLLM_DEPLOY_FRONT_KEY_SHA256 and
    without the key in its environment, then the router, which keeps the key for its calls to the engines;
  - exits non-zero as soon as either of them exits by itself, after stopping the other, so the container's
    restart policy applies (a front without a router, or the reverse, would look alive and serve nothing);
  - on SIGTERM or SIGINT stops both gracefully: the front stops listening and finishes the requests it
    carries (haproxy's soft stop, SIGUSR1), the router finishes its requests in flight (SIGTERM).
"""

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading

KEY_VARIABLE = "VLLM_ROUTER_API_KEY"
KEY_HASH_VARIABLE = "VLLM_DEPLOY_FRONT_KEY_SHA256"
ROUTER_CHILD = "--vllm-deploy-router"  # argv[1] of the launcher's own child that runs the router
LOOPBACK = ("127.0.0.1", "::1", "localhost")
GIVE_UP_SECONDS = 10  # after one of them died, how long the other may take to stop


def say(text: str) -> None:
    print(f"vllm-deploy router launcher: {text}", file=sys.stderr, flush=True)


def key_digest(key: str) -> str:
    return hashlib.sha256(f"Bearer {key}".encode()).hexdigest()


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv or argv.index("--") == 0:
        sys.exit("usage: router_launch.py FRONT_ARGV... -- ROUTER_ARGS...")
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def serve_router(argv: list[str]) -> None:
    """The child: the router itself, in this process (its Rust core handles SIGTERM: a graceful drain)."""
    import setproctitle
    from vllm_router.launch_router import parse_router_args
    from vllm_router.router import Router

    args = parse_router_args(argv)
    if args.host not in LOOPBACK:
        sys.exit(
            f"vllm-deploy: the router must listen on 127.0.0.1 (its admin routes answer anyone who reaches "
            f"it), not {args.host}; clients reach it through the front"
        )
    args.api_key = os.environ[KEY_VARIABLE]  # NB: sent to the engines; the front checks the clients' key
    setproctitle.setproctitle("vllm::router")
    args._validate_router_args()
    Router.from_args(args).start()


def supervise(front_argv: list[str], router_argv: list[str]) -> int:
    key = os.environ.get(KEY_VARIABLE, "")
    if not key:
        sys.exit(f"vllm-deploy: {KEY_VARIABLE} is empty or unset; refusing to start an open router")
    front_env = {name: value for name, value in os.environ.items() if name != KEY_VARIABLE}
    front_env[KEY_HASH_VARIABLE] = key_digest(key)
    running: dict[int, str] = {}  # pid -> name, until reaped
    stop_signal = {"the front": signal.SIGUSR1, "the router": signal.SIGTERM}  # graceful for each
    state = {"stopping": False}

    def send(choose) -> None:
        for pid, name in list(running.items()):
            with contextlib.suppress(ProcessLookupError):  # it has exited already
                os.kill(pid, choose(name))

    def on_signal(number, _frame) -> None:
        if not state["stopping"]:
            say(f"{signal.Signals(number).name}: stopping the front and the router gracefully")
        state["stopping"] = True
        send(lambda name: stop_signal[name])

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    front = subprocess.Popen(front_argv, env=front_env)
    running[front.pid] = "the front"
    if not state["stopping"]:
        router = subprocess.Popen([sys.executable, os.path.abspath(__file__), ROUTER_CHILD, *router_argv])
        running[router.pid] = "the router"
    if state["stopping"]:  # NB: a signal that came while they were starting
        send(lambda name: stop_signal[name])
    codes: dict[str, int] = {}
    failed = False
    while running:
        # NB: os.wait, not Popen.wait: it reaps any child (as PID 1 on Kubernetes, orphans too), and a
        # signal handler that runs meanwhile does not interrupt it (PEP 475).
        pid, status = os.wait()
        name = running.pop(pid, None)
        if name is None:
            continue
        codes[name] = os.waitstatus_to_exitcode(status)
        if not state["stopping"]:
            failed = True
            state["stopping"] = True
            say(f"{name} exited by itself (exit {codes[name]}): stopping the rest; the container exits non-zero")
            send(lambda _name: signal.SIGTERM)
            timer = threading.Timer(GIVE_UP_SECONDS, send, args=(lambda _name: signal.SIGKILL,))
            timer.daemon = True
            timer.start()
    if failed:
        return next((code for code in codes.values() if code > 0), 1)
    # Stopped on request: graceful if each ended by itself with 0 (or by the signal it was sent).
    return 0 if all(code in (0, -stop_signal[name]) for name, code in codes.items()) else 1


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == [ROUTER_CHILD]:
        serve_router(argv[1:])
        return
    front_argv, router_argv = split_argv(argv)
    sys.exit(supervise(front_argv, router_argv))


if __name__ == "__main__":
    main()
