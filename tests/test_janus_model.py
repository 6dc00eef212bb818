"""Janus-Pro (janus/) against transformers' JanusForConditionalGeneration on the tiny preset, fp32: both
checkpoint layouts load (strict keys), the generation head's logits over a prompt and image codes, the decoded
pixels, and greedy next-token generation with either CFG branch."""
import json

import pytest
import torch

from common.weights.checkpoint import CheckpointError
from common.zipar.config import DecodeConfig
from janus.checkpoint import RELEASE, TRANSFORMERS, detect_layout, load_decoder, load_vq
from janus.config import PRESETS, config_from_json
from janus.pipeline import JanusPipeline, load_pipeline
from janus.prompt import prompt_ids, special_ids, stand_in_tokenizer, unconditional_ids
from tests.helpers.janus import TINY, reference_model, release_config_json, write_release, write_transformers

TOKENIZER = stand_in_tokenizer(TINY.text.vocab_size)
IDS = special_ids(TOKENIZER)
SIZE = TINY.image_size


@pytest.fixture(scope="module")
def reference():
    return reference_model(IDS, seed=0)


@pytest.fixture(scope="module")
def folders(reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("janus")
    out = {TRANSFORMERS: root / "transformers", RELEASE: root / "release"}
    write_transformers(out[TRANSFORMERS], reference)
    write_release(out[RELEASE], reference)
    for folder in out.values():
        TOKENIZER.save(str(folder / "tokenizer.json"))
    return out


@pytest.mark.parametrize("layout", [TRANSFORMERS, RELEASE])
def test_config_json_of_both_layouts_is_the_tiny_preset(folders, layout):
    assert detect_layout(folders[layout]) == layout
    assert config_from_json(json.loads((folders[layout] / "config.json").read_text())) == TINY


def test_release_config_of_7b_leaves_the_widths_to_llama_defaults():
    """deepseek-ai/Janus-Pro-7B's language_config names only the layers and vocabulary (the rest are
    transformers' LlamaConfig defaults); read that way it is the 7B preset (tech report Table 1: 4096, 32
    heads, 30 layers). Janus-Pro-1B's names its widths (2048, 5632, 16 heads, 24 layers)."""
    cfg = release_config_json()
    seven = PRESETS["7B"]
    cfg["language_config"] = {"max_position_embeddings": 16384, "model_type": "llama", "num_hidden_layers": 30,
                              "torch_dtype": "bfloat16", "vocab_size": 102400}
    cfg["gen_vision_config"] = {"cls": "VQ-16", "params": {"image_token_size": 16384, "n_embed": 8}}
    cfg["gen_aligner_config"]["params"] |= {"input_dim": 8, "n_embed": 4096}
    cfg["gen_head_config"]["params"] = {"image_token_embed": 4096, "image_token_size": 16384, "n_embed": 4096}
    cfg["vision_config"]["params"]["image_size"] = 384
    assert config_from_json(cfg) == seven
    cfg["language_config"] |= {"hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 16,
                               "num_key_value_heads": 16, "num_hidden_layers": 24}
    cfg["gen_aligner_config"]["params"]["n_embed"] = 2048
    cfg["gen_head_config"]["params"] |= {"image_token_embed": 2048, "n_embed": 2048}
    assert config_from_json(cfg) == PRESETS["1B"]


def reference_logits(reference, ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """transformers: the prompt's text embeddings, then prepare_embeddings_for_image_generation(codes), through
    the language model, then the generation head."""
    embeds = torch.cat([reference.get_input_embeddings()(ids),
                        reference.prepare_embeddings_for_image_generation(codes)], dim=1)
    hidden = reference.model.language_model(inputs_embeds=embeds).last_hidden_state
    return reference.model.generation_head(hidden)


@pytest.mark.parametrize("layout", [TRANSFORMERS, RELEASE])
def test_generation_logits_and_pixels_match_transformers(reference, folders, layout):
    model = load_decoder(folders[layout], TINY, torch.float32, "cpu")
    vq = load_vq(folders[layout], TINY, "cpu")
    ids = torch.tensor([prompt_ids(TOKENIZER, IDS, "a red cube on a mat")])
    codes = torch.randint(0, TINY.vq.codebook_size, (1, 9), generator=torch.Generator().manual_seed(1))
    L = ids.shape[1] + codes.shape[1]
    with torch.no_grad():
        x = torch.cat([model.embed_text(ids), model.embed_tokens(codes)], dim=1)
        ours = model(x, torch.arange(L)[None], torch.arange(L), torch.ones(L, L, dtype=torch.bool).tril()[None],
                     model.new_cache(1, L, "cpu"))
        ref = reference_logits(reference, ids, codes)
        assert ref.abs().max() > 1.0  # not a degenerate model
        assert (ours - ref).abs().max() <= 1e-4
        grid = torch.randint(0, TINY.vq.codebook_size, (2, TINY.grid, TINY.grid), generator=torch.Generator().manual_seed(2))
        pixels = vq.decode(grid)
        assert pixels.shape == (2, 3, SIZE, SIZE)
        # fp32 rounding through the decoder's 7 levels: 1e-4 of the pixel range
        assert (pixels - reference.model.vqmodel.decode(grid.flatten(1))).abs().max() <= 1e-4 * pixels.abs().max()


def test_single_bin_file_of_the_release_loads(reference, tmp_path):
    write_release(tmp_path, reference, shards=1)
    model = load_decoder(tmp_path, TINY, torch.bfloat16, "cpu")
    assert torch.equal(model.gen_head.vision_head.weight,
                       reference.model.generation_head.vision_head.weight.to(torch.bfloat16))


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("gen_head.vision_head.bias"), "missing key 'gen_head.vision_head.bias'"),
    (lambda s: s.update({"gen_head.extra.weight": torch.zeros(1)}), "unexpected key 'gen_head.extra.weight'"),
    (lambda s: s.update({"gen_embed.weight": torch.zeros(3, 8)}), "'gen_embed.weight' has shape"),
    (lambda s: s.pop("gen_vision_model.decoder.conv_out.bias"), "missing key 'decoder.conv_out.bias'"),
])
def test_release_load_errors_name_the_key(reference, tmp_path, damage, message):
    from tests.helpers.janus import release_state
    state = release_state(reference)
    damage(state)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(release_config_json()))
    with pytest.raises(CheckpointError, match=message):
        load_decoder(tmp_path, TINY, torch.float32, "cpu")
        load_vq(tmp_path, TINY, "cpu")


def test_a_folder_of_another_model_is_one_clear_error(tmp_path):
    torch.save({"model.embed_tokens.weight": torch.zeros(2, 2)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="neither deepseek-ai/Janus-Pro keys"):
        load_pipeline(str(tmp_path), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has none of model.safetensors.index.json"):
        load_pipeline(str(tmp_path / "empty"), None)


def greedy_reference(reference, rows: list[list[int]], cfg_scale: float) -> torch.Tensor:
    """generation_inference.py's loop written on transformers' modules, unpadded rows of one length (the
    conditional rows, then their unconditional rows), argmax instead of multinomial, the whole sequence re-run
    every step (no cache)."""
    B = len(rows) // 2
    embeds = reference.get_input_embeddings()(torch.tensor(rows))
    out = []
    for _ in range(TINY.grid ** 2):
        hidden = reference.model.language_model(inputs_embeds=embeds).last_hidden_state[:, -1]
        logits = reference.model.generation_head(hidden)
        guided = logits[B:] + cfg_scale * (logits[:B] - logits[B:])
        token = guided.argmax(-1)
        out.append(token)
        embeds = torch.cat([embeds, reference.prepare_embeddings_for_image_generation(torch.cat([token, token]))[:, None]], 1)
    return torch.stack(out, 1).view(B, TINY.grid, TINY.grid)


PROMPTS = ["a red cube", "a blue cat on a mat in the snow"]


@pytest.fixture(scope="module")
def pipes(folders):
    return {rule: load_pipeline(str(folders[TRANSFORMERS]), None, unconditional=rule)
            for rule in ("release", "transformers")}


@pytest.fixture(scope="module")
def transformers_greedy(reference, pipes):
    """transformers' generate(generation_mode="image", greedy) over a left-padded batch of two prompts, with its
    CFG branch (BOS and begin-of-image kept), and its pixels: computed once, compared at each window."""
    pipe: JanusPipeline = pipes["transformers"]
    rows = [pipe.prompt_ids(p, SIZE) for p in PROMPTS]
    T = max(map(len, rows))
    input_ids = torch.tensor([[IDS.pad] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        from transformers import GenerationConfig
        generation = GenerationConfig(do_sample=False, guidance_scale=5.0, bos_token_id=IDS.bos, pad_token_id=IDS.pad,
                                      generation_kwargs={"boi_token_id": IDS.boi})
        ref = reference.generate(input_ids, attention_mask=mask, generation_mode="image", generation_config=generation)
        ref = ref.view(2, TINY.grid, TINY.grid)
        pixels = reference.decode_image_tokens(ref.flatten(1)).permute(0, 3, 1, 2)
    return ref, pixels


@pytest.mark.parametrize("window", [None, TINY.grid, TINY.grid + 3])
def test_greedy_ntp_equals_transformers_generate(transformers_greedy, pipes, window):
    """transformers' greedy image generation with its CFG branch: the same codes as our engine at w >= W with
    that branch, and the same pixels."""
    ref, pixels = transformers_greedy
    assert len(set(ref.flatten().tolist())) > 3  # not a degenerate model
    pipe: JanusPipeline = pipes["transformers"]
    result = pipe.generate(PROMPTS, torch.tensor([0, 1]), DecodeConfig(window=window, cfg_scale=5.0, top_k=1), SIZE)
    assert torch.equal(result.tokens, ref)
    assert result.forward_passes == TINY.grid ** 2
    ours = pipe.decode_images(result.tokens)
    assert (ours - pixels).abs().max() <= 1e-4 * ours.abs().max()


def test_greedy_ntp_with_the_release_branch_equals_its_loop(reference, pipes):
    """The release's branch (every token but the first and last padded) and its loop: equal codes. The prompt
    holds the begin-of-image string, so the two branches' unconditional prompts differ."""
    prompt = "a red cube <begin_of_image> on a mat"
    conditional = prompt_ids(TOKENIZER, IDS, prompt)
    release = unconditional_ids(conditional, IDS, "release")
    assert release != unconditional_ids(conditional, IDS, "transformers")
    ref = greedy_reference(reference, [conditional, release], cfg_scale=5.0)
    config = DecodeConfig(cfg_scale=5.0, top_k=1)
    ours = pipes["release"].generate([prompt], torch.tensor([3]), config, SIZE).tokens
    assert torch.equal(ours, ref)
    other = pipes["transformers"].generate([prompt], torch.tensor([3]), config, SIZE).tokens
    assert not torch.equal(other, ref)  # the branch matters on this prompt


def test_both_branches_agree_on_a_plain_prompt(pipes):
    config = DecodeConfig(cfg_scale=5.0)
    rows = {rule: pipe.prefix_rows(PROMPTS, SIZE, config) for rule, pipe in pipes.items()}
    assert rows["release"] == rows["transformers"]
    for r in rows["release"][len(PROMPTS):]:
        assert r[0] == IDS.bos and r[-1] == IDS.boi and set(r[1:-1]) == {IDS.pad}
