"""Official state-dict key lists (copies of ../shared/reference/keys/, made by instantiating the official classes)."""
import ast
from pathlib import Path

KEYS_DIR = Path(__file__).resolve().parent / "data" / "keys"


def official_keys(name: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} from tests/data/keys/{name}.txt (tab-separated key and shape), in file order."""
    path = KEYS_DIR / f"{name}.txt"
    assert path.is_file(), f"missing official key list {path}"
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            out[key] = tuple(ast.literal_eval(shape))
    return out
