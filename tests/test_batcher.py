"""serving.batcher: the two adjustments to BentoML's batcher take effect (and a BentoML upgrade that
drops those internals would show here first)."""

from bentoml._internal.marshal import dispatcher

from serving.batcher import tune_batcher


def test_tune_batcher_caps_the_learned_hold_and_sets_the_tick():
    refresh, tick = dispatcher.Optimizer.trigger_refresh, dispatcher.CorkDispatcher.TICKET_INTERVAL
    try:
        assert tune_batcher(0.0, 0.005) == ["max_hold", "tick"]
        assert tune_batcher(0.0, 0.005) == ["max_hold", "tick"]  # twice wraps the original once
        opt = dispatcher.Optimizer(max_latency=60.0)
        for _ in range(10):
            opt.o_stat.append((1, 0.2, 3.0))  # batches that each waited 3 s in the queue (a burst)
        opt.trigger_refresh()
        assert opt.wait == 0.0  # BentoML alone would hold the next batches for ~3 s each
        assert dispatcher.CorkDispatcher.TICKET_INTERVAL == 0.005
    finally:
        dispatcher.Optimizer.trigger_refresh = getattr(refresh, "__wrapped__", refresh)
        dispatcher.CorkDispatcher.TICKET_INTERVAL = tick


def test_without_the_cap_bentoml_would_hold_for_the_mean_wait():
    opt = dispatcher.Optimizer(max_latency=60.0)
    for _ in range(10):
        opt.o_stat.append((1, 0.2, 3.0))
    getattr(dispatcher.Optimizer.trigger_refresh, "__wrapped__", dispatcher.Optimizer.trigger_refresh)(opt)
    assert opt.wait == 3.0
