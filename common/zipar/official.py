"""compat="official": what the paper's released ZipAR code does, per model family, as data.

One compat notion for every family: `compat="official"` reproduces the family's released code token for
token, and where two releases differ they differ in an OfficialRule below, never in a second code path.
The schedule (common.zipar.window: window numbering and range, first-row rule), the scheduler (which slots
start live), the engine (prompt attention in the prefill), the end-of-row pipeline (the unconditional
branch) and the reports (header passes) read the rule of the layout's family (`Layout.family`).

Released code (ThisisBillhe/ZipAR):
  llamagen     LlamaGen-ZipAR/autoregressive/models/generate_zipar.py; tests/test_compat_official.py
               compares tokens and forward calls with outputs of it (tests/data/make_official_golden.py).
  lumina-mgpt  Lumina-mGPT-ZipAR/lumina_mgpt/model/chameleon/modeling_chameleon.py
               (ChameleonForConditionalGeneration._sample) with the processors of inference_solver.py;
               tests/test_lumina_official.py compares with outputs of it run under transformers 4.44.2
               (tests/data/make_lumina_official_golden.py). It supports 768 x 768 and batch 1 only;
               compat runs its rules at every size and batch (our extension). It samples BOI and the two
               size tokens, which our prefix holds (forced), and ignores the temperature on transformers
               4.43/4.44 (its `_sample` takes no logits_warper: the warper lands in model_kwargs).
Emu3 has no released ZipAR code: compat refuses it.
"""
from dataclasses import dataclass

PROMPT_ATTENTIONS = ("causal", "bidirectional")


@dataclass(frozen=True)
class OfficialRule:
    """One family's released ZipAR code where it differs from our defaults."""

    source: str  # the released code
    window_offset: int  # the release's window = ours + offset (what it counts towards the window)
    lowest_window: int  # the release's windows compat accepts: lowest_window .. W + highest_over_cols
    highest_over_cols: int
    window_refusal: str  # what the release does outside that range; formatted with lo, hi, cols
    first_row: str  # common.zipar.window.FIRST_ROW_RULES: when row 1 opens
    reads_unwritten: bool  # every regular cache slot is live from the start (the release reads zero entries)
    unconditional: str  # CFG branch: "family" (the family's own) or "padded_prompt" (<s>, <pad> x (P-1), header)
    prompt_attention: tuple[str, ...]  # in the prefill, how the prompt reads itself: the default, then variants
    header_passes: int  # forward passes the release spends on prefix tokens our prefill holds

    def window_range(self, cols: int) -> tuple[int, int]:
        """The release's windows compat accepts on a row of `cols` tokens, in the release's numbering."""
        return self.lowest_window, cols + self.highest_over_cols


OFFICIAL_RULES = {
    # the window counts decided tokens, as ours; row 1 opens when row 0 is complete; its cache is
    # preallocated and read whole (unwritten entries are zeros). It fails an assertion at w = 1, where
    # compat runs the same rule (an extension); at w = W it copies a token instead of sampling it.
    "llamagen": OfficialRule(
        source="ThisisBillhe/ZipAR LlamaGen-ZipAR/autoregressive/models/generate_zipar.py",
        window_offset=0, lowest_window=1, highest_over_cols=-1,
        window_refusal="compat='official' needs window < W = {cols} (the released code copies a token instead of "
                       "sampling it at w = W and fails above), got {window}",
        first_row="serial", reads_unwritten=True, unconditional="family", prompt_attention=("causal",),
        header_passes=0),
    # zipar_window_size counts a row's segment: its lead token (the width token for row 0, the end-of-row
    # token of the row above otherwise) and its decided cells, so row r+1 opens after w - 1 cells of row r
    # (row 0 included). Its cache holds computed entries only. Its CFG branch is [<s>, <pad> x (P-1)] plus
    # the same image tokens, batched with the prompt. Loaded as released, the prompt attends both ways in
    # the prefill (from_pretrained leaves config._attn_implementation = "sdpa", whose _update_causal_mask
    # returns no prefill mask, while the fork runs its eager attention in every layer, which then applies
    # none); loaded with attn_implementation="eager" it is causal. BOI, H and W take one pass each.
    "lumina-mgpt": OfficialRule(
        source="ThisisBillhe/ZipAR Lumina-mGPT-ZipAR/lumina_mgpt/model/chameleon/modeling_chameleon.py",
        window_offset=1, lowest_window=2, highest_over_cols=1,
        window_refusal="compat='official' takes the released code's zipar_window_size, {lo} <= window <= W + 1 = "
                       "{hi} (it counts the row's lead token; outside that range the released code never opens "
                       "row 1 and fails), got {window}",
        first_row="early", reads_unwritten=False, unconditional="padded_prompt",
        prompt_attention=("bidirectional", "causal"), header_passes=3),
}


def rule_for(family: str | None) -> OfficialRule:
    """The family's rule; ValueError for a family without released ZipAR code."""
    if family not in OFFICIAL_RULES:
        raise ValueError(f"compat='official' reproduces released ZipAR code, which exists for "
                         f"{', '.join(OFFICIAL_RULES)}; not for {family or 'this layout'!r}")
    return OFFICIAL_RULES[family]


def active_rule(family: str | None, compat: str | None) -> OfficialRule | None:
    """The rule a decode follows: the family's under compat='official', else None."""
    return rule_for(family) if compat == "official" else None


def prompt_attention(family: str | None, compat: str | None, requested: str | None) -> str:
    """How the prompt reads itself in the prefill: causal, except under compat='official', where the
    family's rule gives the default and the variants `requested` may pick."""
    rule = active_rule(family, compat)
    if rule is None:
        return "causal"
    if requested is None:
        return rule.prompt_attention[0]
    if requested not in rule.prompt_attention:
        raise ValueError(f"prompt_attention={requested!r}: the released {family} code runs "
                         f"{' or '.join(rule.prompt_attention)} prompt attention")
    return requested
