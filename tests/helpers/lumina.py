"""Tiny Lumina-mGPT test settings (prompts, image size, decoder config) and transformers' Chameleon
as the reference for decoder parity; a stand-in tokenizer at Chameleon's real ids (the released ZipAR code
hard-codes them)."""
from tokenizers import Tokenizer

from common.hf_tokenizer import word_level_tokenizer
from common.models.llama import LlamaConfig
from lumina_mgpt.prompt import image_token_name

PROMPTS = ["a cat", "a red cube on the mat photo of a dog in blue"]
SIZE = (64, 64)  # with a 64-px "checkpoint" size list: a 4x4 grid

TINY = LlamaConfig(vocab_size=120, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_hidden=96, qk_norm_heads=1)


def hf_chameleon():
    from transformers import ChameleonConfig, ChameleonModel
    config = ChameleonConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=4, intermediate_size=96, rms_norm_eps=1e-5,
                             vocabulary_map={"<s>": 0},
                             vq_config={"embed_dim": 8, "num_embeddings": 16, "base_channels": 32,
                                        "channel_multiplier": [1], "num_res_blocks": 1, "latent_channels": 8})
    return ChameleonModel(config).eval()


def to_transformers(state):
    """Lumina's [1, head_dim] qk-norm parameters -> transformers' [n_heads, head_dim]; `model.` prefix off."""
    out = {}
    for k, v in state.items():
        if k.startswith("model."):
            out[k[len("model."):]] = v.expand(4, -1).clone() if "_norm." in k and "self_attn" in k else v
    return out


def chameleon_id_tokenizer(words=("generate", "an", "image", "of", "according", "to", "the", "following", "prompt",
                                  ":", "a", "x", "cat", "red", "cube", "on", "mat")) -> Tokenizer:
    """A word-level tokenizer with Lumina-mGPT's names at the ids of the real Chameleon vocabulary (fact
    sheet section 2.1: <s> 0, <pad> 1, image codes 4..8195, <eoss> 8196, <racm3:break> 8197, and
    <reservedNNNNN> at NNNNN + 4, e.g. end-of-turn 8710, EOL 8803, size tokens 8804 + n), then `words`
    and the digits. The released Lumina-mGPT ZipAR code hard-codes these ids."""
    names = ["<s>", "<pad>", "</s>", "<unk>", *(image_token_name(c) for c in range(8192)), "<eoss>", "<racm3:break>"]
    names += [f"<reserved{i - 4:05d}>" for i in range(len(names), 8804 + 65)]  # through the 2048-px size token
    names += list(dict.fromkeys(words)) + [str(d) for d in range(10)]
    return word_level_tokenizer(names, len(names))
