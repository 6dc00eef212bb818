"""The fault-injection list (tests/mutations.py) still applies to the current sources: every
mutation's old text occurs exactly once in its file and the tests it names exist, so the list cannot
rot silently when the code it mutates is edited."""
import re
from pathlib import Path

from tests.mutations import MUTATIONS, ROOT


def test_every_mutation_applies_and_names_existing_tests():
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)
    for m in MUTATIONS:
        text = (ROOT / m.file).read_text()
        assert text.count(m.old) == 1, (m.name, text.count(m.old))
        assert m.new != m.old and m.tests, m.name
        for node in m.tests:
            path, _, name = node.partition("::")
            assert (ROOT / path).is_file(), (m.name, node)
            if name:
                assert re.search(rf"^def {re.escape(name)}\(", Path(ROOT / path).read_text(), re.M), (m.name, node)
