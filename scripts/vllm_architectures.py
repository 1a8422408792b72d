"""Write the architecture table of the pinned vLLM's model registry (run with the engine venv's python).

    .venv-engine/bin/python scripts/vllm_architectures.py > deploy/data/vllm-architectures.json

Reads the plain name -> (module, class) tables of vllm/model_executor/models/registry.py
(`_MULTIMODAL_MODELS`, `_TEXT_GENERATION_MODELS`); no model module is imported. `model.architecture`
and `vllm-deploy init` check a model's `architectures` against this table, so neither needs vLLM
installed. The CPU and CUDA builds of a release share it. `make test` checks the table is current
(tests/integration/test_vllm_tables.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import sys


def table() -> str:
    """The table's text, from the vLLM this interpreter imports (tests/tools/vllm_session.py calls this too)."""
    from vllm.model_executor.models import registry

    multimodal, text = sorted(registry._MULTIMODAL_MODELS), sorted(registry._TEXT_GENERATION_MODELS)
    # NB: both private tables feed the public registry; a name missing there would be a stale table.
    missing = set(multimodal + text) - set(registry.ModelRegistry.get_supported_archs())
    if missing:
        sys.exit(f"not in ModelRegistry: {sorted(missing)}")
    version = importlib.metadata.version("vllm").split("+")[0]

    def listing(names: list[str]) -> str:  # one name a line, so a vLLM upgrade reads as a short diff
        return "[\n" + ",\n".join(f"    {json.dumps(n)}" for n in names) + "\n  ]"

    return (
        f'{{\n  "vllm_version": {json.dumps(version)},\n  "multimodal": {listing(multimodal)},\n'
        f'  "text": {listing(text)}\n}}\n'
    )


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # vLLM logs to stdout: keep it for the table alone
    out.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
