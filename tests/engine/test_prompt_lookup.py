"""The prompt-lookup draft length: a sequence's first draft and the shortest it shrinks to.

A verify step of 1, 2 or 3 draft tokens costs the same on a CPU (spec.MIN_DRAFT), so drafts
start at 3 tokens and a rejected draft never shrinks the next one below 3; greedy tokens stay
those of plain decoding.
"""

from __future__ import annotations

from loopls.engine.model.sampling_params import SamplingParams
from loopls.engine.serving.core import EngineCore
from loopls.engine.serving.scheduler import SchedulerConfig
from loopls.engine.serving.sequence import Sequence
from loopls.engine.serving.spec import propose_draft, update_draft_limit

from random_prompts import random_prompt


def test_the_draft_limit_starts_at_three_grows_on_whole_drafts_and_never_falls_below_three() -> None:
    seq = Sequence("r", [21, 22, 23], SamplingParams())
    assert seq.draft_limit == 3
    update_draft_limit(seq, drafted=3, accepted=0, ceiling=8)  # rejected whole
    assert seq.draft_limit == 3
    update_draft_limit(seq, drafted=3, accepted=3, ceiling=8)
    assert seq.draft_limit == 6
    update_draft_limit(seq, drafted=6, accepted=6, ceiling=8)
    assert seq.draft_limit == 8
    update_draft_limit(seq, drafted=8, accepted=5, ceiling=8)  # half or more taken: kept
    assert seq.draft_limit == 8
    update_draft_limit(seq, drafted=8, accepted=1, ceiling=8)
    assert seq.draft_limit == 4
    update_draft_limit(seq, drafted=4, accepted=0, ceiling=8)
    assert seq.draft_limit == 3


def _core(lm, drafts: int) -> EngineCore:
    cfg = SchedulerConfig(num_blocks=96, block_size=8, max_step_tokens=64, num_speculative_tokens=drafts)
    return EngineCore(lm.model, cfg, eos_ids=tuple(lm.tokenizer.special.eos_ids))


def test_engine_drafts_start_at_three_tokens_and_stay_there_after_rejections(lm) -> None:
    a = random_prompt(lm, 12, seed=11)
    prompts = [a * 4, (a[:5] + [50, 51]) * 5, a[::-1] * 3]  # repetitive: lookup finds long drafts
    params = SamplingParams(max_tokens=24, min_tokens=24)
    plain = _core(lm, 0)
    expected = []
    for i, p in enumerate(prompts):
        seq = plain.add(f"p{i}", p, params)
        while plain.has_work:
            plain.step()
        expected.append(seq.output_ids)

    core = _core(lm, 8)
    rejected = 0
    for i, p in enumerate(prompts):
        seq = core.add(f"s{i}", p, params)
        drafts = []  # per decode step that drafted: (tokens lookup offered, drafted, accepted)
        while core.has_work:
            offered = len(propose_draft(seq.all_ids, 8, 3, 2)) if seq.output_ids else 0
            room = seq.params.max_tokens - len(seq.output_ids) - 1
            before, kept = seq.metrics.draft_tokens, seq.metrics.accepted_draft_tokens
            core.step()
            drafted = seq.metrics.draft_tokens - before
            if drafted:
                drafts.append((min(offered, room), drafted, seq.metrics.accepted_draft_tokens - kept))
        assert seq.output_ids == expected[i]  # drafts never change the tokens
        assert drafts, "prompt lookup found no draft"
        offered, drafted, _ = drafts[0]
        assert drafted == min(3, offered)  # the first draft: 3 tokens when lookup has them
        for offered, drafted, accepted in drafts:
            assert drafted >= min(3, offered)  # never shorter than 3 while lookup offers 3
        rejected += sum(1 for _, drafted, accepted in drafts if accepted < drafted // 2)
    assert rejected, "no draft was rejected: the floor was not exercised"
