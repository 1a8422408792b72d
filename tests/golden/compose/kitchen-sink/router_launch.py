# Copied by vllm-deploy from deploy/assets/router_launch.py for the image build. Do not edit: change the original.
"""Start vLLM's router (PyPI vllm-router) with its secrets from the environment, never from argv.

The stock `vllm-router` launcher reads the key only from `--api-key`, and never turns on the router's
own client check, so its routes (admin ones included: /add_worker, /remove_worker) answer anyone.
This launcher takes the same arguments and adds, from the environment:
  VLLM_ROUTER_API_KEY              the key the router sends to workers on routes it does not pass through
  VLLM_ROUTER_KEY_VALIDATION_URLS  comma-separated worker URLs (e.g. http://vllm-0:8000/v1/models): the
                                   router then accepts a client's bearer key only if such a URL answers
                                   200 to it, on every route (the router's own api_key_validation_urls)
"""

import os
import sys

import setproctitle
from vllm_router.launch_router import parse_router_args
from vllm_router.router import Router


def main() -> None:
    args = parse_router_args(sys.argv[1:])
    key = os.environ.get("VLLM_ROUTER_API_KEY", "")
    if not key:
        sys.exit("vllm-deploy: VLLM_ROUTER_API_KEY is empty or unset; refusing to start an open router")
    args.api_key = key
    urls = [u.strip() for u in os.environ.get("VLLM_ROUTER_KEY_VALIDATION_URLS", "").split(",") if u.strip()]
    if not urls:
        sys.exit("vllm-deploy: VLLM_ROUTER_KEY_VALIDATION_URLS is empty; refusing to start an open router")
    args.api_key_validation_urls = urls  # NB: a keyword of the router's Rust core the stock launcher never sets
    setproctitle.setproctitle("vllm::router")
    args._validate_router_args()
    Router.from_args(args).start()


if __name__ == "__main__":
    main()
