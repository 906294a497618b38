"""MinHash signatures and LSH band keys, computed with numpy over a whole document at once.

Signatures are bit-identical to ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash32)``
(its default "affine32" scheme: the shingle hash is pre-mixed with the MurmurHash3 32-bit
finalizer, then permuted with ``a * h + b mod 2**32``, parameters drawn from
``np.random.RandomState(seed)``). What makes them faster than datasketch's own batch path:

- the shingle hash is computed per *token* (cached, a Zipf vocabulary repeats) and the five token
  hashes of a shingle are combined with numpy, instead of one SHA-1 per shingle;
- repeated shingles are hashed into the signature once (``np.unique``);
- the permutations run in row blocks into preallocated buffers that stay in cache, instead of
  materialising an (n_shingles x num_perm) matrix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from thresher.pipeline.text import jieba_segmenter, normalize_text

SHINGLE_SEPARATOR = " "  # tokens never contain it: normalize_text collapses whitespace, blanks are dropped
_MASK32 = np.uint32(0xFFFFFFFF)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
# Odd multiplier between token positions (golden ratio, as in Fibonacci hashing).
_COMBINE = np.uint32(0x9E3779B1)
_TOKEN_CACHE_LIMIT = 1 << 20  # cached token hashes per process; cleared when full
_BLOCK_ROWS = 64  # shingles permuted per block: 64 x 2048 x 4 bytes = 512 KiB, fits in L2


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, element-wise (uint32 arithmetic wraps, as intended)."""
    s1, m1, s2, m2, s3 = _FMIX32
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


def token_hash32(token: bytes) -> int:
    """First four bytes of the token's SHA-1, little-endian (datasketch's sha1_hash32, on one token)."""
    return int.from_bytes(hashlib.sha1(token).digest()[:4], "little")


def combine_token_hashes(token_hashes: np.ndarray, ngram: int) -> np.ndarray:
    """The shingle hash of every window of `ngram` consecutive token hashes (uint32 array in, out).

    h = fmix32(h * C + t_i) over the window: position-sensitive, so "a b" and "b a" differ.
    """
    count = len(token_hashes) - ngram + 1
    with np.errstate(over="ignore"):
        combined = token_hashes[:count].copy()
        for offset in range(1, ngram):
            combined = fmix32(combined * _COMBINE + token_hashes[offset : offset + count])
    return combined


def _fmix32_int(value: int) -> int:
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & 0xFFFFFFFF
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & 0xFFFFFFFF
    return value ^ (value >> 16)


def shingle_hash32(shingle: bytes) -> int:
    """The shingle hash as datasketch's `hashfunc`: `shingle` is its tokens joined by one space.

    Plain-integer twin of `combine_token_hashes` (so datasketch is not slowed by numpy scalars):
    ``MinHash(hashfunc=shingle_hash32)`` fed the joined shingles gives `MinHasher`'s signature.
    """
    first, *rest = shingle.split(SHINGLE_SEPARATOR.encode())
    value = token_hash32(first)
    for token in rest:
        value = _fmix32_int(((value * 0x9E3779B1) + token_hash32(token)) & 0xFFFFFFFF)
    return value


def tokenize(text: str, lang: str | None) -> list[str]:
    """MinHash tokens: normalized text split into jieba words for Chinese, whitespace words otherwise."""
    normalized = normalize_text(text)
    if lang == "zh":
        return [t for t in jieba_segmenter().lcut(normalized) if not t.isspace()]
    return normalized.split()


def shingles(tokens: Sequence[str], ngram: int) -> list[str]:
    """The `ngram`-token windows joined by one space; a document shorter than `ngram` is one shingle."""
    if len(tokens) < ngram:
        return [SHINGLE_SEPARATOR.join(tokens)] if tokens else []
    return [SHINGLE_SEPARATOR.join(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)]


def collision_probability(jaccard: float, bands: int, rows: int) -> float:
    """Chance that two documents at Jaccard similarity `jaccard` share at least one band."""
    return 1.0 - (1.0 - jaccard**rows) ** bands


class MinHasher:
    """Signatures and band keys for one (num_perm, seed, ngram) setting; build once per process."""

    def __init__(self, num_perm: int = 2048, seed: int = 1, ngram: int = 5):
        self.num_perm = num_perm
        self.seed = seed
        self.ngram = ngram
        generator = np.random.RandomState(seed)  # exactly datasketch's draw order for affine32
        self.a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        self._token_cache: dict[str, int] = {}
        self._block = np.empty((_BLOCK_ROWS, num_perm), dtype=np.uint32)

    def _token_hashes(self, tokens: Sequence[str]) -> np.ndarray:
        cache = self._token_cache
        if len(cache) > _TOKEN_CACHE_LIMIT:
            cache.clear()
        out = np.empty(len(tokens), dtype=np.uint32)
        for i, token in enumerate(tokens):
            value = cache.get(token)
            if value is None:
                value = cache[token] = token_hash32(token.encode("utf-8"))
            out[i] = value
        return out

    def shingle_hashes(self, tokens: Sequence[str]) -> np.ndarray:
        """Distinct shingle hashes of a token list (uint32); empty for no tokens."""
        if not tokens:
            return np.empty(0, dtype=np.uint32)
        token_hashes = self._token_hashes(tokens)
        return np.unique(combine_token_hashes(token_hashes, min(self.ngram, len(tokens))))

    def signature_of_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """The num_perm minimum permuted values over `hashes`; all 2**32-1 (datasketch's empty) if none."""
        signature = np.full(self.num_perm, _MASK32, dtype=np.uint32)
        if len(hashes) == 0:
            return signature
        with np.errstate(over="ignore"):
            mixed = fmix32(hashes.astype(np.uint32))
        block = self._block
        for start in range(0, len(mixed), _BLOCK_ROWS):
            chunk = mixed[start : start + _BLOCK_ROWS, None]
            rows = block[: len(chunk)]
            np.multiply(chunk, self.a, out=rows)
            np.add(rows, self.b, out=rows)
            np.minimum(signature, rows.min(axis=0), out=signature)
        return signature

    def signature(self, tokens: Sequence[str]) -> np.ndarray:
        return self.signature_of_hashes(self.shingle_hashes(tokens))

    def signature_of_text(self, text: str, lang: str | None) -> np.ndarray:
        return self.signature(tokenize(text, lang))


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One signed 64-bit key per band (int64 array of length `bands`), what LSH groups on.

    Each band's `rows` values are folded into 64 bits with a multiply-xorshift mix; two bands
    share a key when their values are equal (or, at about 2**-64, by accident).
    """
    if bands * rows > len(signature):
        raise ValueError(f"{bands} bands x {rows} rows need {bands * rows} hashes, signature has {len(signature)}")
    values = signature[: bands * rows].reshape(bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = np.full(bands, np.uint64(0xCBF29CE484222325), dtype=np.uint64)
        for column in range(rows):
            key = (key ^ values[:, column]) * np.uint64(0x100000001B3)
            key ^= key >> np.uint64(29)
        key = key * np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(32)
    return key.view(np.int64)
