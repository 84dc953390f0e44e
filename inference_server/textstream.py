"""Text out of token ids, one token at a time: incremental detokenization and stop strings.

``Detokenizer`` uses ``tokenizers.decoders.DecodeStream`` (O(1) per token, holds back
incomplete UTF-8) instead of TextIteratorStreamer, which only emits whole words and
re-decodes everything pending at each step. ``StopMatcher`` holds back any tail that
could still become a stop string, so a stop split across tokens never leaks out.
"""

from __future__ import annotations


class StopMatcher:
    """Finds stop strings in streamed text, holding back any tail that may start one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self.buf = ""

    def push(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        self.buf += text
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf = self.buf[: min(hits)], ""
            return out, True
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), hold, -1):
                if self.buf.endswith(s[:k]):
                    hold = k
                    break
        cut = len(self.buf) - hold
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out, False

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


class Detokenizer:
    """Incremental decoding: DecodeStream when the tokenizer has a Rust backend."""

    def __init__(self, tokenizer):
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._tokenizer = tokenizer
        if self._backend is not None:
            from tokenizers.decoders import DecodeStream

            self._stream = DecodeStream(skip_special_tokens=True)
        else:  # slow tokenizer: re-decode a short window, hold back incomplete UTF-8
            self._ids: list[int] = []
            self._sent = ""

    def step(self, token_id: int) -> str:
        if self._backend is not None:
            return self._stream.step(self._backend, token_id) or ""
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        new, self._sent = text[len(self._sent):], text
        return new
