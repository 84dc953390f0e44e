"""The engine's slab KV cache: every join, step and leave leaves exactly the left-padded
batch that concatenating each row's own cache would give (zeros under the padding)."""

from __future__ import annotations

import torch

from inference_server import kvcache

HEADS, DIM = 2, 3


def _dynamic(rows: list[torch.Tensor]):
    """A prefill's DynamicCache for same-length rows (one layer, keys = values * -1)."""
    from transformers import DynamicCache

    keys = torch.stack(rows)
    return DynamicCache([(keys, -keys)])


def _expected(truth: list[torch.Tensor]) -> torch.Tensor:
    width = max(t.shape[1] for t in truth)
    return torch.stack([torch.nn.functional.pad(t, (0, 0, width - t.shape[1], 0)) for t in truth])


def _check(cache, truth) -> None:
    layer = cache.layers[0]
    assert torch.equal(layer.keys, _expected(truth))
    assert torch.equal(layer.values, -_expected(truth))
    assert layer.get_seq_length() == max(t.shape[1] for t in truth)


def _step(cache, truth, gen) -> None:
    new = torch.randn(len(truth), HEADS, 1, DIM, generator=gen)
    keys, values = cache.update(new, -new, 0)
    for i in range(len(truth)):
        truth[i] = torch.cat([truth[i], new[i]], dim=1)
    assert torch.equal(keys, _expected(truth)) and torch.equal(values, -_expected(truth))


def _leave(cache, truth, keep: list[int]) -> list[torch.Tensor]:
    width = max(t.shape[1] for t in truth)
    kept = [truth[i] for i in keep]
    kvcache.keep_rows(cache, keep, width - max(t.shape[1] for t in kept))
    return kept


def test_joins_steps_and_leaves_match_the_padded_concatenation():
    gen = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randn(HEADS, n, DIM, generator=gen)  # noqa: E731
    truth = [rand(5), rand(5)]
    cache = kvcache.to_slabs(_dynamic(truth))
    _check(cache, truth)
    _step(cache, truth, gen)
    joining = [rand(3)]  # shorter than the batch: padded on the left
    kvcache.join(cache, _dynamic(joining))
    truth += joining
    _check(cache, truth)
    _step(cache, truth, gen)
    joining = [rand(40), rand(40)]  # longer than the batch, and more rows than the slab holds
    kvcache.join(cache, _dynamic(joining))
    truth += joining
    _check(cache, truth)
    for _ in range(300):  # past the spare columns: the slab grows
        _step(cache, truth, gen)
    truth = _leave(cache, truth, [0, 2])  # the longest rows leave: leading columns go too
    _check(cache, truth)
    _step(cache, truth, gen)
    truth = _leave(cache, truth, [1])
    _check(cache, truth)
    joining = [rand(7)] * 3
    kvcache.join(cache, _dynamic(joining))
    truth += joining
    _check(cache, truth)
    _step(cache, truth, gen)


def test_a_leaving_rows_nan_never_shows_under_a_later_rows_padding():
    gen = torch.Generator().manual_seed(1)
    truth = [torch.randn(HEADS, 6, DIM, generator=gen), torch.full((HEADS, 6, DIM), float("nan"))]
    cache = kvcache.to_slabs(_dynamic(truth))
    truth = _leave(cache, truth, [0])
    joining = [torch.randn(HEADS, 2, DIM, generator=gen)]  # reuses the NaN row's slot, mostly padding
    kvcache.join(cache, _dynamic(joining))
    truth += joining
    _check(cache, truth)  # torch.equal fails on any NaN


def _poison(cache) -> None:
    """NaN in every cell outside the used region: what fresh (not zeroed) slab memory may hold."""
    for layer in cache.layers:
        for slab in (layer._k, layer._v):
            used = slab[: layer.rows, :, layer.start:layer.end].clone()
            slab.fill_(float("nan"))
            slab[: layer.rows, :, layer.start:layer.end] = used


def test_cells_never_written_are_never_seen():
    # The slabs are allocated without zeroing; a cell must be written before it comes into
    # view, or a NaN there would reach attention (NaN x a zero weight is still NaN).
    gen = torch.Generator().manual_seed(2)
    rand = lambda n: torch.randn(HEADS, n, DIM, generator=gen)  # noqa: E731
    truth = [rand(4)]
    cache = kvcache.to_slabs(_dynamic(truth), rows_capacity=2)
    for op in ["step", ("join", 2, 1), "step", ("join", 9, 2), "step", ("leave", [1, 2]), ("join", 1, 3),
               *["step"] * 140, ("leave", [0, 3]), ("join", 30, 1), "step"]:
        _poison(cache)
        if op == "step":
            _step(cache, truth, gen)
        elif op[0] == "join":
            joining = [rand(op[1])] * op[2]
            kvcache.join(cache, _dynamic(joining))
            truth += joining
        else:
            truth = _leave(cache, truth, op[1])
        _check(cache, truth)


def test_rows_join_in_place_up_to_the_capacity():
    gen = torch.Generator().manual_seed(3)
    cache = kvcache.to_slabs(_dynamic([torch.randn(HEADS, 6, DIM, generator=gen)]), rows_capacity=4)
    slab = cache.layers[0]._k.data_ptr()
    for n in (6, 2, 5):  # no longer than the batch: neither more rows nor more columns are needed
        kvcache.join(cache, _dynamic([torch.randn(HEADS, n, DIM, generator=gen)]))
    assert cache.layers[0].rows == 4 and cache.layers[0]._k.data_ptr() == slab, "the slabs were reallocated"
