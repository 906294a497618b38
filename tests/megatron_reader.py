"""A reader of Megatron-LM's indexed dataset (.bin/.idx) for the tests, written from its published description
(Megatron-LM's megatron/core/datasets/readme.md, "IndexedDataset"), sharing nothing with thresher's writer.

The index file holds, in order: the header b"MMIDIDX\\x00\\x00", the version (<Q, 1), the numeric code of the
data file's dtype (<B), the number of sequences (<Q), the number of documents (<Q, the length of the document
index), then per sequence its number of elements (int32), per sequence its byte offset in the data file (int64),
and the document index (int64): document d is the sequence range [doc_index[d], doc_index[d + 1]).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
           8: np.uint16}


@dataclass
class IndexedDataset:
    dtype: np.dtype
    sequence_lengths: np.ndarray
    sequence_pointers: np.ndarray
    document_indices: np.ndarray
    data: bytes

    def sequence(self, i: int) -> np.ndarray:
        return np.frombuffer(self.data, self.dtype, int(self.sequence_lengths[i]), int(self.sequence_pointers[i]))

    def documents(self) -> list[list[int]]:
        """Each document's tokens: its sequences, joined."""
        return [[int(t) for s in range(start, end) for t in self.sequence(s)]
                for start, end in zip(self.document_indices[:-1].tolist(), self.document_indices[1:].tolist(),
                                      strict=True)]


def read_indexed_dataset(index: bytes, data: bytes) -> IndexedDataset:
    """The dataset of an .idx file's and a .bin file's bytes; asserts the layout holds together."""
    assert index[:9] == b"MMIDIDX\x00\x00", index[:9]
    (version,) = struct.unpack_from("<Q", index, 9)
    assert version == 1
    (code,) = struct.unpack_from("<B", index, 17)
    sequences, documents = struct.unpack_from("<QQ", index, 18)
    offset = 9 + 8 + 1 + 8 + 8
    lengths = np.frombuffer(index, "<i4", sequences, offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(index, "<i8", sequences, offset)
    offset += pointers.nbytes
    document_indices = np.frombuffer(index, "<i8", documents, offset)
    assert offset + document_indices.nbytes == len(index), "bytes after the document index"
    dtype = np.dtype(_DTYPES[code]).newbyteorder("<")
    ends = pointers + lengths.astype(np.int64) * dtype.itemsize
    assert (pointers[1:] == ends[:-1]).all() and (not sequences or (pointers[0] == 0 and ends[-1] == len(data)))
    return IndexedDataset(dtype, lengths, pointers, document_indices, data)


def read_prefix(prefix) -> IndexedDataset:
    """The dataset at a local PREFIX (PREFIX.idx and PREFIX.bin), as Megatron's --data-path names it."""
    with open(f"{prefix}.idx", "rb") as index, open(f"{prefix}.bin", "rb") as data:
        return read_indexed_dataset(index.read(), data.read())
