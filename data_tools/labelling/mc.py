"""Monte-Carlo step labels (Math-Shepherd): roll out from every step's prefix, label by the successes.

A step's hard label is whether any of its rollouts succeeded, its soft label the fraction that did.
With early stopping a prefix draws in doubling rounds and leaves at its first success (hard labels
the same, soft ones biased high). The rollouts come from a ``RolloutBank`` (``bank``).
"""

from __future__ import annotations

from collections.abc import Sequence

from data_tools.completers.protocol import Completer
from data_tools.labelling.bank import Done, LabelReport, PrefixKey, RolloutBank, collect
from data_tools.schema import StepwiseExample, is_right


def mc_label_batch(examples: Sequence[StepwiseExample], bank: RolloutBank, done: Done,
                   early_stop: bool = False) -> None:
    """Monte-Carlo labels for a batch, each example handed to ``done`` once all its prefixes are decided.

    Without early stopping every prefix draws ``rollouts`` samples in one completer call; with it,
    prefixes draw in doubling rounds and leave at their first success.
    """
    keys = [bank.keys(ex, n) for n, ex in enumerate(examples)]

    def open_(key: PrefixKey) -> bool:
        drawn, ok = bank.stats(key)
        return not bank.failed(key) and drawn < bank.rollouts and not (early_stop and ok)

    pending = list(range(len(examples)))
    while pending:
        bank.draw({k: bank.next_target(k) if early_stop else bank.rollouts
                   for i in pending for k in keys[i] if open_(k)})
        still = []
        for i in pending:
            if any(bank.failed(k) for k in keys[i]):
                done(i, None)
            elif any(open_(k) for k in keys[i]):
                still.append(i)
            else:
                soft = [ok / drawn for drawn, ok in map(bank.stats, keys[i])]
                soft.append(1.0 if bank.final_ok(examples[i]) else 0.0)
                done(i, bank.labelled(examples[i], keys[i], soft, [is_right(s) for s in soft], "mc"))
        pending = still


def mc_label(examples: Sequence[StepwiseExample], completer: Completer, rollouts: int = 8,
             base_seed: int = 0, answer_key: str = "answer", early_stop: bool = False,
             few_shot: str | None = None) -> tuple[list[StepwiseExample], LabelReport]:
    """Label every step of every example with soft MC labels (``meta['hard_labels']`` keeps hard ones).

    ``labels`` holds the soft label (fraction of successful rollouts, a float in [0, 1]); the hard
    labels (any rollout succeeded) go to ``meta['hard_labels']``, the rollouts and successes behind
    each to ``meta['step_rollouts']``/``meta['step_successes']``. Gold answers are read from
    ``meta[answer_key]``. With ``early_stop`` a prefix stops at its first success: hard labels stay
    the same, soft ones become successes among the rollouts drawn until then (biased high).
    """
    bank = RolloutBank(completer, rollouts, base_seed, answer_key, few_shot)
    labelled = collect(lambda exs, b, done: mc_label_batch(exs, b, done, early_stop), examples, bank)
    return labelled, bank.report
