"""SMS segment limits: GSM-7 (160 characters, or 153 per part once concatenated; extension-table characters
count twice) and UCS-2 for anything else (70, or 67 per part, counted in UTF-16 code units)."""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Encoding:
    name: str
    single: int  # units in a one-part message
    part: int  # units per part of a concatenated message


GSM7 = Encoding("GSM-7", 160, 153)
UCS2 = Encoding("UCS-2", 70, 67)


def _units(char: str, encoding: Encoding) -> int:
    if encoding is GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1  # a surrogate pair in UTF-16


def encoding_for(text: str) -> Encoding:
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def split(text: str) -> list[str]:
    """The parts a phone receives `text` in; never splits an escape sequence or a surrogate pair."""
    encoding = encoding_for(text)
    if sum(_units(c, encoding) for c in text) <= encoding.single:
        return [text] if text else []
    parts, current, used = [], [], 0
    for char in text:
        units = _units(char, encoding)
        if used + units > encoding.part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += units
    parts.append("".join(current))
    return parts
