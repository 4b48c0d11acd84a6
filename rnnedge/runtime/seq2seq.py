"""Torch-free sequence-to-sequence decoding of an exported folder (encoder.onnx + decoder.onnx).

    sess = Seq2SeqSession("dates/")
    sess.generate(["5 May 2001", "wednesday, september 30, 2099"], beam=3)   # ['2001-05-05', '2099-09-30']

The folder holds `encoder.onnx` (tokens int64 (B, T), lengths int64 (B,) -> memory (B, T, M),
memory_mask bool (B, T), state (B, S)) and `decoder.onnx` (one step: prev int64 (B,), state,
memory, memory_mask -> logits (B, V), state, attention (B, T)). Both carry `rnnedge.seq2seq`
metadata (JSON: vocab, pad/bos/eos/unk ids, max_source_len, max_target_len).

Strings map to ids character by character (one character per vocabulary entry). Input rules, each a
one-line BadInputError: a list of str; surrounding whitespace is stripped; an empty string, a
character outside the vocabulary (named, with its position) and a string longer than
`max_source_len` are refused.

The search (`beam_search`) is numpy over any step function, shared with the torch model's
`generate`, so a checkpoint and its export run the same algorithm. Greedy is beam 1. Each row
stops at EOS (finished rows are no longer fed to the decoder); beam search keeps finished
hypotheses in the beam with their summed log-probability (no length penalty) and ends when all k
are finished or after `max_len` steps; ties go to the lower index (stable sort).

numpy and onnxruntime only: never torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rnnedge.errors import BadInputError
from rnnedge.runtime import known_wrong
from rnnedge.runtime.providers import open_session
from rnnedge.runtime.signature import tensor_info

log = logging.getLogger(__name__)

META_KEY = "rnnedge.seq2seq"  # metadata of both files: vocab, ids, maximum lengths (JSON)
FILES = ("encoder.onnx", "decoder.onnx")
Step = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple]


class Codec:
    """Strings <-> ids over a character vocabulary (ids 0..3: <pad>, <bos>, <eos>, <unk>)."""

    def __init__(self, vocab: Sequence[str], max_source_len: int, max_target_len: int, *, pad: int = 0, bos: int = 1,
                 eos: int = 2):
        self.vocab = list(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab) if len(tok) == 1}
        self.special = {i for i, tok in enumerate(self.vocab) if len(tok) != 1}
        self.max_source_len, self.max_target_len = int(max_source_len), int(max_target_len)
        self.pad, self.bos, self.eos = pad, bos, eos

    @classmethod
    def from_meta(cls, meta: dict) -> Codec:
        return cls(meta["vocab"], meta["max_source_len"], meta["max_target_len"], pad=meta["pad"], bos=meta["bos"],
                   eos=meta["eos"])

    def encode(self, strings, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int64 (B, T) padded, lengths int64 (B,)); bad input is a one-line BadInputError naming the
        string by its index (+ `offset`, the batch's start in the caller's list)."""
        if isinstance(strings, str) or not isinstance(strings, (list, tuple)):
            raise BadInputError(f"expected a list of strings, got {type(strings).__name__}")
        rows = []
        for i, s in enumerate(strings, start=offset):
            if not isinstance(s, str):
                raise BadInputError(f"item {i} is a {type(s).__name__}, expected a string")
            s = s.strip()
            if not s:
                raise BadInputError(f"string {i} is empty")
            if len(s) > self.max_source_len:
                raise BadInputError(f"string {i} has {len(s)} characters; the model takes at most {self.max_source_len}")
            bad = next((p for p, ch in enumerate(s) if ch not in self.index), None)
            if bad is not None:
                raise BadInputError(f"string {i} ({s!r}): character {s[bad]!r} at position {bad} is not in the model's vocabulary")
            rows.append([self.index[ch] for ch in s])
        width = max((len(r) for r in rows), default=1)
        tokens = np.full((len(rows), width), self.pad, dtype=np.int64)  # (B, T)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r
        return tokens, np.array([len(r) for r in rows], dtype=np.int64)

    def encode_batches(self, strings, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`encode` per batch of `batch_size` strings; every string is checked before any is returned."""
        if isinstance(strings, str) or not isinstance(strings, (list, tuple)):
            raise BadInputError(f"expected a list of strings, got {type(strings).__name__}")
        return [self.encode(strings[i : i + batch_size], offset=i) for i in range(0, len(strings), batch_size)]

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Ids (each row ending at its first EOS, if any) -> strings; special tokens are dropped."""
        out = []
        for row in ids:
            row = list(row)
            row = row[: row.index(self.eos)] if self.eos in row else row
            out.append("".join(self.vocab[i] for i in row if i not in self.special))
        return out

    def max_len(self, max_len: int | None) -> int:
        if max_len is None:
            return self.max_target_len
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise BadInputError(f"max_len must be a positive integer, got {max_len!r}")
        return int(max_len)


def check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities over the last axis."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def beam_search(step: Step, memory: np.ndarray, mask: np.ndarray, state: np.ndarray, *, beam: int = 1, max_len: int,
                bos: int, eos: int) -> list[list[int]]:
    """Decode B rows: memory (B, T, M), mask (B, T), state (B, S) -> B lists of ids (up to, not including, EOS)."""
    if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or beam < 1:
        raise BadInputError(f"beam must be a positive integer, got {beam!r}")
    B, k = memory.shape[0], int(beam)
    src = np.repeat(np.arange(B), k)  # (B*k,) source row of each hypothesis
    state = state[src]  # (B*k, S)
    scores = np.full((B, k), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis per row to start with
    finished = np.ones((B, k), dtype=bool)
    finished[:, 0] = False
    tokens = np.zeros((B * k, 0), dtype=np.int64)
    prev = np.full(B * k, bos, dtype=np.int64)
    cache: tuple = (None, None, None)  # (active rows, memory, mask) gathered for them
    for _ in range(max_len):
        idx = np.flatnonzero(~finished.reshape(-1))  # (A,) hypotheses still decoding
        if idx.size == 0:
            break
        if cache[0] is None or not np.array_equal(cache[0], idx):
            cache = (idx, np.ascontiguousarray(memory[src[idx]]), np.ascontiguousarray(mask[src[idx]]))
        logits, new_state, _ = step(prev[idx], np.ascontiguousarray(state[idx]), cache[1], cache[2])
        logp = log_softmax(logits)  # (A, V)
        flat = scores.reshape(-1)
        cand = np.full((B * k, logp.shape[1]), -np.inf)  # (B*k, V)
        cand[idx] = flat[idx, None] + logp
        done = np.flatnonzero(finished.reshape(-1))
        cand[done, eos] = flat[done]  # a finished hypothesis stays, once, at its score
        cand = cand.reshape(B, -1)  # (B, k*V)
        order = np.argsort(-cand, axis=1, kind="stable")[:, :k]  # (B, k) best first, ties to the lower index
        scores = np.take_along_axis(cand, order, axis=1)
        parent = (np.arange(B)[:, None] * k + order // logp.shape[1]).reshape(-1)  # (B*k,)
        token = (order % logp.shape[1]).reshape(-1)  # (B*k,)
        full = state.copy()
        full[idx] = new_state
        state = full[parent]
        finished = (finished.reshape(-1)[parent] | (token == eos) | ~np.isfinite(scores.reshape(-1))).reshape(B, k)
        tokens = np.concatenate([tokens[parent], token[:, None]], axis=1)
        prev = token
    # best hypothesis: the highest-scoring finished one, else the highest-scoring one (beams are sorted)
    pick = np.where(finished.any(axis=1), finished.argmax(axis=1), 0)  # (B,)
    best = tokens.reshape(B, k, -1)[np.arange(B), pick]  # (B, L)
    rows = [row.tolist() for row in best]
    return [r[: r.index(eos)] if eos in r else r for r in rows]


def read_meta(session) -> dict:
    """The `rnnedge.seq2seq` metadata of an open session, checked."""
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if not raw:
        raise BadInputError(f"no {META_KEY} metadata: not an rnnedge sequence-to-sequence file")
    try:
        meta = json.loads(raw)
        for key in ("vocab", "pad", "bos", "eos", "max_source_len", "max_target_len"):
            meta[key]  # noqa: B018 - a KeyError names the missing key
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BadInputError(f"corrupt {META_KEY} metadata ({e})") from e
    return meta


def seq2seq_files(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(encoder.onnx, decoder.onnx) in `folder`; a missing folder or file is a one-line BadInputError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder (a sequence-to-sequence model is a folder with {' and '.join(FILES)})")
    paths = tuple(folder / f for f in FILES)
    for p in paths:
        if not p.is_file():
            raise BadInputError(f"{p}: missing (a sequence-to-sequence folder holds {' and '.join(FILES)})")
    return paths  # type: ignore[return-value]


class Seq2SeqSession:
    """An exported encoder-decoder folder, decoded with onnxruntime: `generate(strings, beam, max_len)`."""

    def __init__(self, folder: str | os.PathLike, *, providers=None, threads: int | None = None):
        """``providers``: as ``Session`` takes them (names, or ``(name, {option: value})`` pairs)."""
        enc_path, dec_path = seq2seq_files(folder)
        self.folder = Path(folder)
        self.encoder = open_session(enc_path, providers=providers, threads=threads)
        self.decoder = open_session(dec_path, providers=providers, threads=threads)
        self.meta = read_meta(self.encoder)
        if read_meta(self.decoder)["vocab"] != self.meta["vocab"]:
            raise BadInputError(f"{folder}: encoder.onnx and decoder.onnx disagree on the vocabulary")
        self.codec = Codec.from_meta(self.meta)
        self._dec_out = [o.name for o in self.decoder.get_outputs()]
        self.known_wrong = known_wrong.findings(enc_path, self.encoder.get_providers(), [tensor_info(a) for a in
                                                self.encoder.get_inputs()],
                                                dict(self.encoder.get_modelmeta().custom_metadata_map))
        for finding in self.known_wrong:
            log.warning("%s; strings of different lengths in one batch are refused (batch_size=1 avoids it)", finding.message(enc_path))

    def encode(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(memory (B, T, M), memory_mask (B, T), state (B, S)) from ids and lengths."""
        if self.known_wrong and (lengths < tokens.shape[1]).any():
            raise BadInputError(f"strings of different lengths in one batch refused: {self.known_wrong[0].message(self.folder)}")
        memory, mask, state = self.encoder.run(None, {"tokens": tokens, "lengths": lengths})
        return memory, mask, state

    def step(self, prev: np.ndarray, state: np.ndarray, memory: np.ndarray, mask: np.ndarray):
        """One decoder step: (logits (B, V), state (B, S), attention (B, T))."""
        return tuple(self.decoder.run(None, {"prev": prev, "state": state, "memory": memory, "memory_mask": mask}))

    def generate(self, strings: list[str], beam: int = 1, max_len: int | None = None, batch_size: int = 256) -> list[str]:
        """Decode `strings` in batches of `batch_size` -> output strings (greedy for beam=1)."""
        return self.codec.decode(self.generate_ids(strings, beam=beam, max_len=max_len, batch_size=batch_size))

    def generate_ids(self, strings: list[str], beam: int = 1, max_len: int | None = None, batch_size: int = 256) -> list[list[int]]:
        """Decoded ids of `strings` (EOS and what follows cut off)."""
        check_batch_size(batch_size)
        steps = self.codec.max_len(max_len)
        batches = self.codec.encode_batches(strings, batch_size)  # every string checked before any work
        out: list[list[int]] = []
        for tokens, lengths in batches:
            memory, mask, state = self.encode(tokens, lengths)
            out += beam_search(self.step, memory, mask, state, beam=beam, max_len=steps, bos=self.codec.bos, eos=self.codec.eos)
        return out
