"""Latency histograms with HdrHistogram's buckets and wire format, kept sparse.

The load engine records microseconds from 1 µs to 60 s at 3 significant digits. An
`hdrh.histogram.HdrHistogram` of that range is a 17,408-counter array (139 kB) and records a
value in about 0.8 µs of Python; the engine keeps one histogram per request name per second,
so it keeps only the counters that are non-zero, in a dict, and fills them a second at a time
from the raw samples (`Counter` over the samples, then one index computation per distinct
value). Everything else is HdrHistogram's, bit for bit:

- the bucket layout (`Layout`: the same index for the same value, for any range and precision),
- the figures: `value_at_percentile`, `min`, `max`, `mean` give what HdrHistogram gives for
  the same counts (highest equivalent value at a percentile, median-equivalent mean),
- the V2 compressed encoding, base64-wrapped (`encode`/`decode`): `hdrh` decodes what this
  writes and this decodes what `hdrh` (or HdrHistogram in Java, Go, C) writes.

Histograms add exactly (counts add per bucket), so shards and seconds merge without loss;
percentiles are never averaged.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

_V2_ENCODING_COOKIE = 0x1C849303 | 0x10
_V2_COMPRESSION_COOKIE = 0x1C849304 | 0x10
_PAYLOAD_HEADER = struct.Struct(">IIIIqqd")
_EXTERNAL_HEADER = struct.Struct(">II")


class Layout:
    """HdrHistogram's bucket layout for one (lowest, highest, significant digits)."""

    def __init__(self, lowest: int, highest: int, digits: int):
        if not 1 <= digits <= 5:
            raise ValueError("significant digits must be 1..5")
        if lowest < 1 or highest < 2 * lowest:
            raise ValueError("need 1 <= lowest and 2 * lowest <= highest")
        self.lowest, self.highest, self.digits = lowest, highest, digits
        self.unit_magnitude = int(math.floor(math.log(lowest) / math.log(2)))
        sub_bucket_count_magnitude = int(math.ceil(math.log(2 * 10**digits) / math.log(2)))
        self.half_magnitude = max(sub_bucket_count_magnitude - 1, 0)
        self.sub_bucket_count = 1 << (self.half_magnitude + 1)
        self.half_count = self.sub_bucket_count // 2
        self.mask = (self.sub_bucket_count - 1) << self.unit_magnitude
        smallest_untrackable = self.sub_bucket_count << self.unit_magnitude
        buckets = 1
        while smallest_untrackable <= highest:
            smallest_untrackable <<= 1
            buckets += 1
        self.bucket_count = buckets
        self.counts_len = (buckets + 1) * self.half_count
        self._shift = self.unit_magnitude + self.half_magnitude + 1

    def index_of(self, value: int) -> int:
        bucket = (value | self.mask).bit_length() - self._shift
        return ((bucket + 1) << self.half_magnitude) + (value >> (bucket + self.unit_magnitude)) - self.half_count

    def value_of(self, index: int) -> int:
        """The lowest value of the bucket at `index`."""
        bucket = (index >> self.half_magnitude) - 1
        sub = (index & (self.half_count - 1)) + self.half_count
        if bucket < 0:
            sub -= self.half_count
            bucket = 0
        return sub << (bucket + self.unit_magnitude)

    def _range_size(self, value: int) -> int:
        bucket = (value | self.mask).bit_length() - self._shift
        sub = value >> (bucket + self.unit_magnitude)
        if sub >= self.sub_bucket_count:
            bucket += 1
        return 1 << (self.unit_magnitude + bucket)

    def highest_equivalent(self, value: int) -> int:
        low = self.value_of(self.index_of(value))
        return low + self._range_size(value) - 1

    def median_equivalent(self, value: int) -> int:
        return self.value_of(self.index_of(value)) + (self._range_size(value) >> 1)


@lru_cache(maxsize=16)
def layout(lowest: int = LOWEST_US, highest: int = HIGHEST_US, digits: int = SIGNIFICANT_DIGITS) -> Layout:
    return Layout(lowest, highest, digits)


class Histogram:
    """A sparse HdrHistogram: `counts` maps a bucket index to its count."""

    __slots__ = ("layout", "counts", "total")

    def __init__(self, layout_: Layout | None = None):
        self.layout = layout_ or layout()
        self.counts: dict[int, int] = {}
        self.total = 0

    # -- recording ---------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        lay = self.layout
        value = min(max(int(value), 0), lay.highest)
        index = lay.index_of(value)
        self.counts[index] = self.counts.get(index, 0) + count
        self.total += count

    def record_many(self, values: Iterable[int]) -> None:
        """Record integer samples at once; values outside the range are clamped to it."""
        lay = self.layout
        counts = self.counts
        highest, mask, shift, half_mag, unit, half = (
            lay.highest,
            lay.mask,
            lay._shift,
            lay.half_magnitude,
            lay.unit_magnitude,
            lay.half_count,
        )
        added = 0
        for value, n in Counter(values).items():
            if value < 0:
                value = 0
            elif value > highest:
                value = highest
            bucket = (value | mask).bit_length() - shift
            index = ((bucket + 1) << half_mag) + (value >> (bucket + unit)) - half
            counts[index] = counts.get(index, 0) + n
            added += n
        self.total += added

    def add(self, other: Histogram) -> None:
        """Add `other`'s counts; a histogram of another layout is re-bucketed value by value."""
        counts = self.counts
        if other.layout is self.layout or (
            (other.layout.lowest, other.layout.highest, other.layout.digits)
            == (self.layout.lowest, self.layout.highest, self.layout.digits)
        ):
            for index, n in other.counts.items():
                counts[index] = counts.get(index, 0) + n
            self.total += other.total
        else:
            for index, n in other.counts.items():
                self.record(other.layout.value_of(index), n)

    def copy(self) -> Histogram:
        out = Histogram(self.layout)
        out.counts = dict(self.counts)
        out.total = self.total
        return out

    # -- figures, as HdrHistogram computes them ----------------------------------------------

    def value_at_percentile(self, percentile: float) -> int:
        return self.values_at_percentiles([percentile])[0]

    def values_at_percentiles(self, percentiles: list[float]) -> list[int]:
        if not self.total:
            return [0 for _ in percentiles]
        lay = self.layout
        targets = [max(int((min(p, 100.0) * self.total / 100) + 0.5), 1) for p in percentiles]
        order = sorted(range(len(targets)), key=targets.__getitem__)
        out = [0] * len(targets)
        running = 0
        position = 0
        for index in sorted(self.counts):
            running += self.counts[index]
            while position < len(order) and running >= targets[order[position]]:
                value = lay.value_of(index)
                which = order[position]
                out[which] = lay.highest_equivalent(value) if percentiles[which] else value
                position += 1
            if position == len(order):
                break
        return out

    def min(self) -> int:
        if not self.total:
            return 0
        return self.layout.value_of(min(self.counts))

    def max(self) -> int:
        if not self.total:
            return 0
        lay = self.layout
        return lay.highest_equivalent(lay.value_of(max(self.counts)))

    def mean(self) -> float:
        """HdrHistogram's mean: each bucket counts at its median-equivalent value."""
        if not self.total:
            return 0.0
        lay = self.layout
        half_mag, half, unit = lay.half_magnitude, lay.half_count, lay.unit_magnitude
        total = 0
        for index, n in self.counts.items():
            # value_of(index) and the bucket's width, inlined: this runs for every bucket of
            # every histogram the engine closes, once a second per request name.
            bucket = (index >> half_mag) - 1
            sub = (index & (half - 1)) + half
            if bucket < 0:
                sub -= half
                bucket = 0
            width = 1 << (bucket + unit)
            total += n * ((sub << (bucket + unit)) + (width >> 1))
        return total / self.total

    # -- wire format -------------------------------------------------------------------------

    def encode(self) -> str:
        """HdrHistogram's V2 compressed encoding, base64 (what `hdrh` `encode()` returns)."""
        out = bytearray()
        previous = -1
        # Counters in index order up to the last non-zero one; a run of zeros is written
        # as one negative count.
        for index in sorted(i for i, n in self.counts.items() if n):
            run = index - previous - 1
            if run:
                _zigzag(out, -run)
            _zigzag(out, self.counts[index])
            previous = index
        lay = self.layout
        header = _PAYLOAD_HEADER.pack(_V2_ENCODING_COOKIE, len(out), 0, lay.digits, lay.lowest, lay.highest, 1.0)
        compressed = zlib.compress(header + bytes(out))
        return base64.b64encode(_EXTERNAL_HEADER.pack(_V2_COMPRESSION_COOKIE, len(compressed)) + compressed).decode()

    @classmethod
    def decode(cls, text: str | bytes, into: Layout | None = None) -> Histogram:
        """Decode HdrHistogram's V2 base64 encoding. With `into`, the result has that layout
        (re-bucketed if the encoding's differs)."""
        raw = base64.b64decode(text)
        if len(raw) < _EXTERNAL_HEADER.size:
            raise ValueError("histogram encoding too short")
        cookie, length = _EXTERNAL_HEADER.unpack_from(raw)
        if cookie & ~0xF0 != _V2_COMPRESSION_COOKIE & ~0xF0:
            raise ValueError(f"not an HdrHistogram V2 compressed encoding (cookie {cookie:#x})")
        payload = zlib.decompress(raw[_EXTERNAL_HEADER.size : _EXTERNAL_HEADER.size + length])
        cookie, payload_len, offset, digits, lowest, highest, _ratio = _PAYLOAD_HEADER.unpack_from(payload)
        if cookie & ~0xF0 != _V2_ENCODING_COOKIE & ~0xF0:
            raise ValueError(f"not an HdrHistogram V2 payload (cookie {cookie:#x})")
        if offset:
            raise ValueError("normalizing index offsets are not supported")
        source = layout(lowest, highest, digits)
        hist = cls(source)
        counts = hist.counts
        data = payload[_PAYLOAD_HEADER.size : _PAYLOAD_HEADER.size + payload_len]
        index = 0
        position = 0
        total = 0
        end = len(data)
        while position < end:
            value, position = _unzigzag(data, position)
            if value < 0:
                index += -value
            else:
                if value:
                    counts[index] = value
                    total += value
                index += 1
        hist.total = total
        if into is not None and into is not source:
            converted = cls(into)
            converted.add(hist)
            return converted
        return hist

    def to_hdr(self):
        """The same histogram as an `hdrh.histogram.HdrHistogram`, for readers that want one."""
        from hdrh.histogram import HdrHistogram

        return HdrHistogram.decode(self.encode())

    def __eq__(self, other) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        mine = {i: n for i, n in self.counts.items() if n}
        theirs = {i: n for i, n in other.counts.items() if n}
        return (self.layout.lowest, self.layout.highest, self.layout.digits) == (
            other.layout.lowest,
            other.layout.highest,
            other.layout.digits,
        ) and mine == theirs

    def __repr__(self) -> str:
        return f"Histogram(total={self.total}, buckets={len(self.counts)}, digits={self.layout.digits})"


def _zigzag(out: bytearray, value: int) -> None:
    """Append `value` as HdrHistogram's ZigZag LEB128 (at most 9 bytes, the last one whole)."""
    v = (value << 1) ^ (value >> 63)
    v &= 0xFFFFFFFFFFFFFFFF
    for _ in range(8):
        if v < 0x80:
            out.append(v)
            return
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v & 0xFF)


def _unzigzag(data: bytes, position: int) -> tuple[int, int]:
    v = 0
    shift = 0
    for _ in range(8):
        byte = data[position]
        position += 1
        v |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    else:
        v |= data[position] << 56
        position += 1
    return (v >> 1) ^ -(v & 1), position
