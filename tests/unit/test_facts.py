"""deploy/facts reads its YAML files with libyaml's parser where PyYAML has it: the values must be exactly those of
the pure-Python safe loader."""

from __future__ import annotations

import pytest
import yaml

from deploy import facts


@pytest.mark.parametrize("path", [facts.DEVICES_FILE, facts.MODELS_FILE, facts.CLASSES_FILE], ids=lambda p: p.name)
def test_the_data_files_read_the_same_as_with_safe_load(path):
    fast, plain = facts._yaml(path), yaml.safe_load(path.read_text(encoding="utf-8"))
    assert repr(fast) == repr(plain)  # NB: repr, not ==: 1 == True and 1 == 1.0, yet they would render differently
