"""Fault injection: plant one-line bugs in a scratch copy of the repository and check that the tests
named for each one catch it (fail), while the same tests pass on the unchanged copy.

    python tests/mutations.py                  # every mutation
    python tests/mutations.py --only tie       # those whose name contains "tie"
    python tests/mutations.py --verbose        # and name the tests that failed under each

The work tree is never modified: its files (tracked, plus untracked ones git does not ignore) are
copied to a temporary folder, and each mutation is applied there and undone after its run. Exit
status 1 when a mutation is missed or the unchanged copy fails its tests. Not a test module:
tests/test_mutations.py only checks that every mutation still applies to the current sources.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    old: str  # exact text, found exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids that must fail once the mutation is applied


SAMPLING, ADAPTIVE, ROW_DRAFTS = "tests/test_sampling.py", "tests/test_adaptive.py", "tests/test_row_drafts.py"
TIES = f"{SAMPLING}::test_inverse_cdf_takes_the_first_index_exceeding_at_exact_ties"
ROUNDING = f"{SAMPLING}::test_inverse_cdf_near_block_boundaries_under_rounding"
TOTAL = "tests/test_input_errors.py::test_the_sampler_never_leaves_the_vocabulary_whatever_the_logits"
SEEDS = f"{SAMPLING}::test_image_seeds_distinct_at_large_indices_and_seeds"
RESIDUAL = f"{ADAPTIVE}::test_a_rejection_resamples_where_p_exceeds_q"
BOUND = f"{ROW_DRAFTS}::test_certain_model_meets_the_drafted_pass_bound"
OPENINGS = "tests/test_draw_keys.py::test_adaptive_openings_count_attempts_and_replay"
REDRAWS = "tests/test_draw_keys.py::test_row_draft_draws_replay_with_fresh_attempts"
VISIBILITY = "tests/test_visibility.py"
COUPLED_MARGINAL = f"{ROW_DRAFTS}::test_drafted_cell_follows_the_exact_model_marginal"
KEPT_Q = "tests/test_draw_keys.py::test_every_redrafted_cell_stores_its_pass_distribution"
TREE = "tests/test_draft_tree.py"
TREE_DEPTH, TREE_BONUS = f"{TREE}::test_one_depth_follows_p", f"{TREE}::test_token_after_accepted_drafts_follows_p"
TREE_DECODES = f"{TREE}::test_tree_decodes_follow_the_exact_distribution"
TREE_ENGINE = "tests/test_draft_tree_engine.py"
TREE_READS = f"{TREE_ENGINE}::test_no_query_reads_an_entry_of_a_token_not_decided"
TREE_REPLAY = f"{TREE_ENGINE}::test_tree_draws_replay_from_their_keys"
TREE_JOINT = f"{TREE_ENGINE}::test_tree_decodes_follow_the_exact_model_joint"
TREE_MASK = "tests/test_draft_tree_parts.py::test_tree_visibility_reads_its_path_only"
AHEAD = f"{ROW_DRAFTS}::test_drafting_ahead_decides_only_on_kept_drafts_within_the_window"
AHEAD_LANES = "tests/test_draft_ahead.py::test_lanes_reach_into_the_drafts_fed_above"
AHEAD_PASSES = "tests/test_draft_ahead.py::test_rows_rejecting_drafts_need_fewer_passes_drafting_ahead"
OVERWRITE = "tests/test_run_identity.py::test_overwrite_leaves_no_npz_of_the_old_run"

MUTATIONS = [
    # 1. the sampler's boundary contract
    Mutation("sampler: in-block tie goes to the entry that only reaches u*total", "common/zipar/sampling.py",
             "cumsum(-1), x - before, right=True)", "cumsum(-1), x - before, right=False)", (TIES,)),
    Mutation("sampler: block tie goes to the block that only reaches u*total", "common/zipar/sampling.py",
             "searchsorted(block_cdf, x, right=True)", "searchsorted(block_cdf, x, right=False)", (TIES,)),
    Mutation("sampler: no fallback when rounding puts u*total past the block", "common/zipar/sampling.py",
             "drawn = (b * block + torch.minimum(j, last))", "drawn = (b * block + j)", (ROUNDING,)),
    Mutation("sampler: a row without mass keeps its out-of-range draw", "common/zipar/sampling.py",
             "return torch.where(total > 0, drawn, uniform)[..., 0]", "return drawn[..., 0]", (TOTAL,)),
    Mutation("sampler: NaN and inf entries keep their mass", "common/zipar/sampling.py",
             "torch.where((p > 0) & (p < float(\"inf\")), p, torch.zeros_like(p))", "p", (TOTAL,)),
    Mutation("sampler: fallback takes the block's first non-zero entry", "common/zipar/sampling.py",
             "last = (block - 1) - (inner > 0).flip(-1).to(torch.int32).argmax(-1, keepdim=True)",
             "last = (inner > 0).to(torch.int32).argmax(-1, keepdim=True)", (ROUNDING,)),
    Mutation("sampler: fallback takes the block's last entry, zero or not", "common/zipar/sampling.py",
             "last = (block - 1) - (inner > 0).flip(-1).to(torch.int32).argmax(-1, keepdim=True)",
             "last = torch.full_like(j, block - 1)", (ROUNDING,)),
    # 2. the drafted pass-count lower bound
    Mutation("engine: drafted lower bound one pass too high", "common/zipar/engine.py",
             "return 1 + -(-(layout.cols - 1) // (config.draft_len + 1)) + layout.rows - 1",
             "return 2 + -(-(layout.cols - 1) // (config.draft_len + 1)) + layout.rows - 1", (BOUND,)),
    Mutation("engine: drafted lower bound counts L tokens a pass, not L + 1", "common/zipar/engine.py",
             "-(-(layout.cols - 1) // (config.draft_len + 1))", "-(-(layout.cols - 1) // config.draft_len)", (BOUND,)),
    # 3. seed packing
    Mutation("image_seeds: 16 bits for the image index", "common/zipar/sampling.py",
             "return base_seed * 2**32 + indices", "return base_seed * 2**16 + indices", (SEEDS,)),
    Mutation("image_seeds: 31 bits for the image index", "common/zipar/sampling.py",
             "return base_seed * 2**32 + indices", "return base_seed * 2**31 + indices", (SEEDS,)),
    Mutation("image_seeds: base seed 2**31 accepted", "common/zipar/sampling.py",
             "if not 0 <= base_seed < 2**31:", "if not 0 <= base_seed <= 2**31:", (SEEDS,)),
    # 4. fresh randomness per attempt
    Mutation("openers: opener attempt counter never incremented", "common/zipar/openers.py",
             "state.attempts += plan.open_lane", "state.attempts += 0 * plan.open_lane", (OPENINGS,)),
    Mutation("engine: acceptance and resample keys made at attempt 0", "common/zipar/engine.py",
             "state.purposes, attempts[..., None])",
             "state.purposes, attempts[..., None] * (state.purposes == PURPOSE_TOKEN))", (OPENINGS, REDRAWS)),
    Mutation("engine: draw counter not incremented when a token is written", "common/zipar/engine.py",
             "state.draws.scatter_add_(1, cells, torch.ones_like(cells))",
             "state.draws.scatter_add_(1, cells, torch.zeros_like(cells))", (REDRAWS,)),
    Mutation("engine: token draws keyed at attempt 0 whatever the draw count", "common/zipar/engine.py",
             "state.purposes, attempts[..., None])",
             "state.purposes, attempts[..., None] * (state.purposes != PURPOSE_TOKEN))", (REDRAWS,)),
    Mutation("engine: every key made at attempt 0", "common/zipar/engine.py",
             "state.purposes, attempts[..., None])", "state.purposes, 0 * attempts[..., None])", (OPENINGS, REDRAWS)),
    Mutation("openers: opener resample reuses the acceptance uniform", "common/zipar/openers.py",
             "uniforms=torch.where(verify, uniforms[..., 2], uniforms[..., 0]))",
             "uniforms=torch.where(verify, uniforms[..., 1], uniforms[..., 0]))", (OPENINGS,)),
    # 5. the residual distribution
    Mutation("residual drawn from p instead of max(0, p - q)", "common/zipar/sampling.py",
             "r = (p - q).clamp(min=0)", "r = p.clamp(min=0)", (RESIDUAL, OPENINGS)),
    Mutation("residual from max(0, q - p)", "common/zipar/sampling.py",
             "r = (p - q).clamp(min=0)", "r = (q - p).clamp(min=0)", (RESIDUAL, OPENINGS)),
    # 6. visibility
    Mutation("masks: a row draft visible to every row", "common/zipar/masks.py",
             "(draft_slots[:, None, :] & (slot_rows == query_rows[..., None]))",
             "draft_slots[:, None, :]", (VISIBILITY,)),
    Mutation("scheduler: draft-fed slots live for everyone in their pass", "common/zipar/scheduler.py",
             "writes = on & ~draft_fed if L else on", "writes = on if L else on", (VISIBILITY,)),
    Mutation("scheduler: placeholder never retired by the real last token", "common/zipar/scheduler.py",
             "live[:, sch.slot_map.opener_base:sch.slot_map.opener_end] &= ~feeds_last[:, :-1]",
             "live[:, sch.slot_map.opener_base:sch.slot_map.opener_end] &= True", (VISIBILITY,)),
    Mutation("scheduler: placeholder does not shadow the real slot (compat)", "common/zipar/scheduler.py",
             "live.scatter_(1, torch.where(opener & ~real, stands_for, sch.slot_map.scratch), False)",
             "live.scatter_(1, torch.where(opener & ~real, sch.slot_map.scratch, sch.slot_map.scratch), False)", (VISIBILITY,)),
    Mutation("row drafts: the last kept draft's entry is not made live", "common/zipar/row_drafts.py",
             "(fed_col < padded.gather(1, plan.query_rows) - 1)",
             "(fed_col < padded.gather(1, plan.query_rows) - 2)", (VISIBILITY,)),
    Mutation("masks: a query does not read its own slot", "common/zipar/masks.py",
             "earlier = slot_positions.to(torch.int32) <= positions",
             "earlier = slot_positions.to(torch.int32) < positions", (VISIBILITY,)),
    Mutation("engine: every image's mask from the first image's live slots", "common/zipar/engine.py",
             "mask = visibility_mask(_for_model(plan.live, cfg)",
             "mask = visibility_mask(_for_model(plan.live[:1], cfg)", (VISIBILITY,)),
    # more one-line engine bugs
    Mutation("openers: pending opener distribution never updated", "common/zipar/openers.py",
             "torch.gather(probs, 1, opener, out=state.opener_probs[:, None])", "torch.gather(probs, 1, opener)",
             (OPENINGS,)),
    Mutation("row drafts: the rejected draft kept instead of its resample", "common/zipar/row_drafts.py",
             "tokens = torch.where(coupled, verified, drawn)",
             "tokens = torch.where(coupled, torch.where(cols == first_here, draft, verified), drawn)", (REDRAWS,)),
    Mutation("row drafts: redrafts keep the old q", "common/zipar/row_drafts.py",
             "redrafted = on_row & (cols > first_here)", "redrafted = on_row & (cols > W)", (REDRAWS,)),
    Mutation("row drafts: a kept coupled redraft keeps its old q", "common/zipar/row_drafts.py",
             "redrafted = on_row & (cols > first_here)",
             "redrafted = on_row & (cols > first_here) & ~(coupled & kept)", (REDRAWS, KEPT_Q)),
    Mutation("row drafts: a rejected draft redrawn from p, not the residual", "common/zipar/row_drafts.py",
             "tokens = torch.where(coupled, verified, drawn)",
             "tokens = torch.where(coupled, torch.where(cols == first_here, drawn, verified), drawn)", (REDRAWS,)),
    Mutation("row drafts: redrafts drawn afresh under maximal coupling", "common/zipar/row_drafts.py",
             "coupled = is_check if state.config.draft_coupling == \"maximal\" else",
             "coupled = is_check & (cols <= first_here) if True else", (REDRAWS,)),
    Mutation("row drafts: a redraft keeps its old draft without a test", "common/zipar/row_drafts.py",
             "tokens = torch.where(coupled, verified, drawn)",
             "tokens = torch.where(coupled, torch.where(cols > first_here, draft, verified), drawn)",
             (REDRAWS, COUPLED_MARGINAL)),
    Mutation("row drafts: ring entries of different rows collide", "common/zipar/row_drafts.py",
             "(rows % scheduler.draft_rows) * L + cols % L", "(rows % scheduler.draft_rows) + cols % L", (REDRAWS,)),
    Mutation("row drafts ahead: a token kept although a draft it read was rejected", "common/zipar/row_drafts.py",
             "first[:, :H] = _kept_frontier(state, plan, first[:, :H])", "first[:, :H] = first[:, :H]", (AHEAD,)),
    Mutation("masks: drafts above read one column past the window", "common/zipar/masks.py",
             "[:, None, :] < reach[..., None])", "[:, None, :] <= reach[..., None])", (AHEAD,)),
    Mutation("row drafts ahead: a row counts the row above's whole lane as fed", "common/zipar/scheduler.py",
             "seen = state.count[:, r] + (lane.sum(-1) - 1).clamp(min=0)", "seen = state.count[:, r] + lane.sum(-1)",
             (AHEAD, AHEAD_LANES)),
    Mutation("row drafts ahead: a row's lane ignores the drafts the row above feeds", "common/zipar/scheduler.py",
             "seen = state.count[:, r] + (lane.sum(-1) - 1).clamp(min=0)", "seen = state.count[:, r]",
             (AHEAD_LANES, AHEAD_PASSES)),
    Mutation("row drafts ahead: new drafts ignore the drafts the row above holds", "common/zipar/scheduler.py",
             "seen = cnt[:, r] + rows[-1].sum(-1)", "seen = cnt[:, r]", (AHEAD_LANES, AHEAD_PASSES)),
    # run folders
    Mutation("run folder: --overwrite deletes only the legacy RUN.npz, not RUN-nN.npz", "common/run_folder.py",
             "npzs = [*run_dir.parent.glob(f\"{glob.escape(run_dir.name)}-n*.npz\"), run_dir.with_name(",
             "npzs = [run_dir.with_name(", (OVERWRITE,)),
    # exact proactive drafting (common/zipar/draft_tree.py): three of its four rules
    Mutation("draft tree: a later passing candidate wins", "common/zipar/draft_tree.py",
             "tested = valid[..., k] & (winner < 0)", "tested = valid[..., k]", (TREE_DEPTH, TREE_DECODES)),
    Mutation("draft tree: siblings tested as if drawn from q", "common/zipar/draft_tree.py",
             "torch.where(valid[..., k, None], _without(proposal, code), proposal)", "proposal", (TREE_DEPTH,)),
    Mutation("draft tree: the token after accepted drafts drawn from a uniform", "common/zipar/draft_tree.py",
             "    return sample_probs(p, u)", "    return sample_probs(torch.ones_like(p), u)", (TREE_BONUS,)),
    # the tree in the engine (common/zipar/tree_drafts.py)
    Mutation("tree: decided tokens off the chain never fed again (no catch-up)", "common/zipar/tree_drafts.py",
             "catch = (j <= tree_drafts.uncached[..., None])", "catch = (j < 0)", (TREE_READS,)),
    Mutation("tree: a node reads its siblings and cousins", "common/zipar/masks.py",
             "on_path = ancestors[q_node[..., None], s_node[:, None, :]]",
             "on_path = torch.ones_like(ancestors[q_node[..., None], s_node[:, None, :]])", (TREE_MASK,)),
    Mutation("tree: siblings drawn with their acceptance keys", "common/zipar/tree_drafts.py",
             "cells[..., None], PURPOSE_SIBLING, attempt", "cells[..., None], PURPOSE_SIBLING_ACCEPT, attempt",
             (TREE_REPLAY,)),
    Mutation("tree: the paths' distributions mislaid within a depth", "common/zipar/tree_drafts.py",
             "levels = [dist[:, :1]] + [dist[:, 1 + level_start(K, t):1 + level_start(K, t + 1)]",
             "levels = [dist[:, :1]] + [dist[:, 1 + level_start(K, t):1 + level_start(K, t + 1)].flip(1)",
             (TREE_JOINT,)),
    Mutation("engine: compiled steps' state not marked static (CUDA graphs then skipped)", "common/zipar/engine.py",
             "        if state.step is not decode_pass:  # every state tensor", "        if False:  # every state tensor",
             ("tests/test_compile.py::test_decode_state_lives_at_static_addresses",)),
    # exact all the same (a point-mass q conditions on the draft), but it accepts less than documented
    Mutation("row drafts: a random draft tested as if its q were a point mass", "common/zipar/row_drafts.py",
             "return code, Q_UNIFORM", "return code, Q_POINT", (REDRAWS,)),
    Mutation("openers: verification compares against q from the wrong image", "common/zipar/openers.py",
             "p_old = state.opener_probs[:, None]", "p_old = state.opener_probs.roll(1, 0)[:, None]", (OPENINGS,)),
]


def copy_sources(dest: Path) -> None:
    """The work tree's files that git tracks or would track (untracked, not ignored) -> dest."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():  # a deleted, not yet staged file is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_tests(root: Path, tests, timeout: float) -> tuple[int | None, float, list[str]]:
    """Run the tests in one process without workers: (pytest exit status, None on timeout; seconds;
    the failing tests, by function name and parameters)."""
    start = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-n", "0", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - start, []
    failed = [line.split()[1].split("::", 1)[-1] for line in done.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode, time.monotonic() - start, failed


def apply(root: Path, m: Mutation) -> str:
    """Apply m in the copy; returns the original text to restore."""
    path = root / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        raise ValueError(f"{m.name}: the old text occurs {text.count(m.old)} times in {m.file}")
    path.write_text(text.replace(m.old, m.new))
    return text


def main(args) -> int:
    chosen = [m for m in MUTATIONS if not args.only or any(s in m.name for s in args.only)]
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        root = Path(tmp)
        copy_sources(root)
        needed = sorted({t for m in chosen for t in m.tests})
        status, seconds, failed = run_tests(root, needed, args.timeout * 4)
        print(f"unchanged copy: {'pass' if status == 0 else 'FAIL'} ({seconds:.0f} s, {len(needed)} test ids)")
        if status != 0:
            print("\n".join(f"  failing: {name}" for name in failed))
            return 1
        caught = 0
        for m in chosen:
            original = apply(root, m)
            try:
                status, seconds, failed = run_tests(root, m.tests, args.timeout)
            finally:
                (root / m.file).write_text(original)
            verdict = {0: "MISSED", None: "caught (timeout)", 1: "caught"}.get(status, f"caught (pytest exit {status})")
            caught += status != 0
            print(f"{verdict:>8}  {m.name}  [{m.file}; {seconds:.0f} s]", flush=True)
            if args.verbose and failed:
                by_test = Counter(name.split("[")[0] for name in failed)
                print("          failed: " + ", ".join(f"{name} ({n})" for name, n in by_test.items()))
    print(f"catch rate: {caught}/{len(chosen)} = {caught / max(len(chosen), 1):.0%}")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], metavar="TEXT",
                        help="run only the mutations whose name contains one of these strings")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutation's test run")
    parser.add_argument("--verbose", action=argparse.BooleanOptionalAction, default=False,
                        help="name the failing tests under each caught mutation (with how many parameter sets failed)")
    sys.exit(main(parser.parse_args()))
