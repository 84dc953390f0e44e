"""Bounds on a prompt that are known before it is tokenized.

Tokenizing is the costliest thing a request does before it is admitted: a 1 MiB prompt
takes about 160 MB while the tokenizer builds its encoding, and 64 of them at once took
the server from 0.4 GB to about 10 GB (issue 9), only to answer each with a 400. So:

- A prompt longer than ``prompt_char_limit`` characters is refused without tokenizing it.
  The limit is the context length times the longest token of the vocabulary (in
  characters of its string form, which is never shorter than the text it decodes to:
  byte-level BPE spells each byte as one character, SentencePiece's ``▁`` is one space,
  a byte-fallback ``<0x41>`` is six). Fewer tokens than the context cannot cover more
  characters than that, so no prompt that fits is refused (short of a chat template or
  normalizer that deletes text).
- Prompts under it that still need a thread to tokenize share ``ENCODE_THREADS`` slots,
  so a burst of long prompts costs a few encodings' memory at a time, not one per request.
"""

from __future__ import annotations

from typing import Any

ENCODE_THREADS = 2  # both cores of a small CPU box; more only multiplies peak memory


def longest_token_chars(tokenizer: Any) -> int:
    """Characters in the longest token string of the vocabulary (added tokens included)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1) or 1


def prompt_char_limit(tokenizer: Any, context_len: int) -> int:
    """Characters beyond which a prompt cannot fit in ``context_len`` tokens."""
    return context_len * longest_token_chars(tokenizer)
