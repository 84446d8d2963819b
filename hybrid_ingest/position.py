"""Where a record sits in a Kinesis shard: one type, one text form.

A position is the record's sequence number plus its KPL sub-sequence number (0
for a record that was not aggregated). Its text form is used everywhere a
position is stored or compared as text: DynamoDB checkpoints and watermarks, the
``_kpos`` column of raw files, raw file names, Iceberg snapshot summaries. The
text is fixed-width and zero-padded, so string order is position order (the
merge compares ``_kpos`` in SQL and DynamoDB compares checkpoints as strings),
and it holds only digits and ``_``, so it is safe in a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEQUENCE_DIGITS = 64  # Kinesis sequence numbers are decimals of up to ~56 digits
SUB_DIGITS = 10
_TEXT = re.compile(rf"(\d{{{SEQUENCE_DIGITS}}})_(\d{{{SUB_DIGITS}}})")


@dataclass(frozen=True, order=True)
class Position:
    sequence: int
    sub: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.sequence < 10**SEQUENCE_DIGITS or not 0 <= self.sub < 10**SUB_DIGITS:
            raise ValueError(f"not a Kinesis position: sequence {self.sequence}, sub-sequence {self.sub}")

    def __str__(self) -> str:
        return f"{sequence_prefix(self.sequence)}{self.sub:0{SUB_DIGITS}d}"

    @classmethod
    def parse(cls, text: str) -> Position:
        match = _TEXT.fullmatch(text)
        if match is None:
            raise ValueError(f"not a position text: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, sequence_number: str, sub: int = 0) -> Position:
        """From the sequence number string the Kinesis API returns."""
        return cls(int(sequence_number), sub)


def sequence_prefix(sequence: int | str) -> str:
    """The text of every position of this sequence number up to its sub-sequence digits.

    The consumer computes it once per Kinesis record and appends each user record's
    sub-sequence, instead of formatting a whole position per event.
    """
    return f"{int(sequence):0{SEQUENCE_DIGITS}d}_"
