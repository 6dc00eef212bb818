"""Hugging Face `tokenizers` files the text-to-image families share (Lumina-mGPT and Janus-Pro ship a
tokenizer.json): loading one, looking up a family's special tokens, and a small word-level stand-in with
the family's special names for runs without files (--random-init)."""
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers


def load_tokenizer_json(path: str | Path, where: str) -> Tokenizer:
    """tokenizer.json, or a folder holding it; `where` says which release ships it (the error's hint)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"--tokenizer-path: {file} not found ({where})")
    return Tokenizer.from_file(str(file))


def special_token_ids(tokenizer: Tokenizer, names: dict[str, str], model: str) -> dict[str, int]:
    """field -> id of each special token `names[field]`; a tokenizer lacking one is not `model`'s."""
    ids = {}
    for field, name in names.items():
        i = tokenizer.token_to_id(name)
        if i is None:
            raise ValueError(f"tokenizer lacks {name!r} ({field}): not the {model} tokenizer")
        ids[field] = i
    return ids


def word_level_tokenizer(names: list[str], vocab_size: int) -> Tokenizer:
    """Token i is names[i] (lowercased words, digits one by one; names in <...> are special tokens);
    unknown words map to <unk>, which `names` must hold."""
    if len(names) > vocab_size:
        raise ValueError(f"stand-in vocabulary needs {len(names)} ids, the config has {vocab_size}")
    tok = Tokenizer(models.WordLevel({n: i for i, n in enumerate(names)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tok.add_special_tokens([n for n in names if n.startswith("<")])
    return tok
