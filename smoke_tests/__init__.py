"""Smoke suite: proves a running OpenAI-compatible vLLM endpoint answers image requests.

Run it from the repository root against any endpoint::

    pytest smoke_tests --base-url http://127.0.0.1:8000 --api-key KEY --local-image-server

Every option also reads an environment variable (``SMOKE_*``); see ``smoke_tests/settings.py``.
"""
