"""The running batch's KV cache: rows left-padded to a common end, kept in preallocated slabs.

transformers' ``DynamicCache`` appends each decode step with ``torch.cat``, which copies
every row's whole cache, into freshly allocated memory, at every step. With 8 rows of a
few hundred tokens that is hundreds of MB written per step, which on a CPU costs about as
much as the step's own compute. Here each layer keeps its keys and values in a slab with
room to spare:

- a decode step writes one column in place;
- the slabs have room for the whole batch's rows from the start (``rows_capacity``), so a
  joining row is copied in once, right-aligned with the others (left padding; the
  engine's attention mask hides it); only a prompt longer than the batch's cache (it
  needs columns on the left) or running out of spare columns regrows the slabs;
- a leaving row's slot is refilled by moving the rows after it up;
- columns that became padding for every row are dropped by moving a start index.

The model only ever sees views of the used region. Slabs are not zeroed when allocated
(that cost as much as the copies); instead every cell is written before it comes into
view, padding with zeros, so a masked cell can never hold a NaN (left over from an
earlier row, or whatever fresh memory held).
"""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicLayer

SPARE_COLUMNS = 128  # room for decode steps before a slab must grow


class SlabLayer(DynamicLayer):
    """One layer's keys and values, [rows, heads, columns, head_dim] inside larger slabs.

    Only what the engine calls is supported: ``update``, ``add_rows``, ``keep_rows``."""

    is_croppable = False

    def __init__(self, keys, values, rows_capacity: int = 0, columns_capacity: int = 0) -> None:
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        rows, _, width, _ = keys.shape
        self.rows = rows
        self._alloc(max(rows, rows_capacity), max(width + SPARE_COLUMNS, columns_capacity), 0, keys, values, width)

    def _alloc(self, rows_cap: int, cols_cap: int, start: int, keys, values, width: int) -> None:
        """New slabs holding ``keys/values`` (all their rows, ``width`` columns) from column ``start``."""
        heads, dim = keys.shape[1], keys.shape[3]
        # Not zeroed: every cell is written (a value, or zero under padding) before it comes
        # into view, and zeroing the spare room cost as much as the copies themselves.
        k = keys.new_empty((rows_cap, heads, cols_cap, dim))
        v = values.new_empty((rows_cap, heads, cols_cap, dim))
        n = keys.shape[0]
        k[:n, :, start:start + width] = keys
        v[:n, :, start:start + width] = values
        self._k, self._v, self.start, self.end = k, v, start, start + width
        self._view()

    def _view(self) -> None:
        self.keys = self._k[: self.rows, :, self.start:self.end]
        self.values = self._v[: self.rows, :, self.start:self.end]

    def _regrow(self, rows_cap: int, cols_cap: int, start: int) -> None:
        width = self.end - self.start
        used_k = self._k[: self.rows, :, self.start:self.end]
        used_v = self._v[: self.rows, :, self.start:self.end]
        self._alloc(rows_cap, cols_cap, start, used_k, used_v, width)

    def update(self, key_states, value_states, *args, **kwargs):
        n = key_states.shape[-2]
        if self.end + n > self._k.shape[2]:
            width = self.end - self.start
            self._regrow(self._k.shape[0], max(2 * self._k.shape[2], width + n + SPARE_COLUMNS), 0)
        self._k[: self.rows, :, self.end:self.end + n] = key_states
        self._v[: self.rows, :, self.end:self.end + n] = value_states
        self.end += n
        self._view()
        return self.keys, self.values

    def add_rows(self, keys, values) -> None:
        """Append rows whose own cache is ``keys/values`` (no padding), right-aligned."""
        new, _, n, _ = keys.shape
        width = self.end - self.start
        rows_cap, cols_cap = self._k.shape[0], self._k.shape[2]
        need_rows = self.rows + new
        if need_rows > rows_cap or n > self.end:  # no room for the rows, or for a longer prompt on the left
            start = max(0, n - width)
            grown_rows = max(need_rows, 2 * rows_cap) if need_rows > rows_cap else rows_cap
            self._regrow(grown_rows, max(cols_cap, start + width + SPARE_COLUMNS), start)
        start = min(self.start, self.end - n)
        if start < self.start:  # the old rows' new columns on the left are padding for them
            self._k[: self.rows, :, start:self.start] = 0
            self._v[: self.rows, :, start:self.start] = 0
            self.start = start
        lo, hi = self.rows, need_rows
        self._k[lo:hi, :, self.start:self.end - n] = 0
        self._v[lo:hi, :, self.start:self.end - n] = 0
        self._k[lo:hi, :, self.end - n:self.end] = keys
        self._v[lo:hi, :, self.end - n:self.end] = values
        self.rows = need_rows
        self._view()

    def keep_rows(self, keep: list[int], drop_columns: int) -> None:
        """Keep only rows ``keep`` (ascending), in that order; drop ``drop_columns`` on the left."""
        for slot, row in enumerate(keep):
            if slot != row:  # row > slot, so moving up in order never overwrites a row still to move
                self._k[slot, :, self.start:self.end] = self._k[row, :, self.start:self.end]
                self._v[slot, :, self.start:self.end] = self._v[row, :, self.start:self.end]
        self.rows = len(keep)
        self.start += drop_columns
        self._view()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a slab cache is not croppable")  # DynamicLayer's would desync the slabs


def to_slabs(cache: Any, rows_capacity: int = 0, columns_capacity: int = 0) -> Any:
    """Turn a filled ``DynamicCache`` (a prefill's) into slab layers, in place; returns it.
    ``rows_capacity``: rows to make room for at once (the batch size), so joining rows do
    not regrow the slabs one doubling at a time. ``columns_capacity``: columns to make room
    for at once (a prompt prefilled in pieces: its whole length, so no piece copies the
    cache again)."""
    cache.layers = [SlabLayer(layer.keys, layer.values, rows_capacity, columns_capacity) for layer in cache.layers]
    return cache


def join(cache: Any, other: Any) -> None:
    """Append the rows of ``other`` (a prefill's ``DynamicCache``) to the slab ``cache``."""
    for mine, theirs in zip(cache.layers, other.layers, strict=True):
        mine.add_rows(theirs.keys, theirs.values)


def keep_rows(cache: Any, keep: list[int], drop_columns: int) -> None:
    for layer in cache.layers:
        layer.keep_rows(keep, drop_columns)


class PrefixStore:
    """The KV cache of finished requests, kept so that a later prompt that starts with the same
    tokens (the next turn of a chat: the history, then the answer fed back) is prefilled from
    where they end instead of from its first token.

    An entry is one finished row: its adapter, the tokens in its cache (prompt, then every
    generated token but the last) and each layer's keys and values [1, heads, tokens, dim].
    At most ``max_tokens`` tokens are kept in all, least recently used out first; an entry
    that is a prefix of a newer one is dropped (the newer one serves it).
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: list[tuple[str | None, list[int], list[tuple[Any, Any]]]] = []  # most recent last
        self.hits = 0  # prompt tokens served from the store so far (tests and benchmarks read it)

    @property
    def tokens(self) -> int:
        return sum(len(tokens) for _, tokens, _ in self._entries)

    def add(self, adapter: str | None, tokens: list[int], layers: list[tuple[Any, Any]]) -> None:
        if not self.max_tokens or len(tokens) > self.max_tokens:
            return
        self._entries = [e for e in self._entries if not (e[0] == adapter and tokens[:len(e[1])] == e[1])]
        self._entries.append((adapter, tokens, layers))
        while self.tokens > self.max_tokens:
            self._entries.pop(0)

    def match(self, adapter: str | None, prompt: list[int],
              min_tokens: int = 1) -> tuple[int, list[tuple[Any, Any]] | None]:
        """(tokens of ``prompt`` found cached, those tokens' keys and values per layer), or (0,
        None) below ``min_tokens``; always leaves at least the prompt's last token to prefill
        (its logits give the first token)."""
        best, found = 0, None
        for i, (owner, tokens, layers) in enumerate(self._entries):
            if owner != adapter:
                continue
            n = min(len(tokens), len(prompt) - 1)
            same = next((j for j in range(n) if tokens[j] != prompt[j]), n)
            if same > best:
                best, found = same, i
        if found is None or best < min_tokens:
            return 0, None
        entry = self._entries.pop(found)
        self._entries.append(entry)  # most recently used
        self.hits += best
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in entry[2]]
