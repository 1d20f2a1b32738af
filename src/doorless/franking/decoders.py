"""`DECODERS`: one decoder per franking wire structure (``docs/franking.md`` §1, "Wire
structures"), for property tests and tooling."""

from __future__ import annotations

from collections.abc import Callable

from doorless.codec import decode
from doorless.franking.report import ReceivedFrank
from doorless.franking.structures import (
    AbuseReport,
    AttachmentDescriptor,
    FrankedContent,
    FrankingAAD,
    FrankingIntegrityTBS,
    SafeAADItem,
    SenderIdentity,
    ServerFrank,
    ServerFrankingContext,
)

DECODERS: dict[str, Callable[[bytes], object]] = {
    "SenderIdentity": lambda b: decode(SenderIdentity, b),
    "AttachmentDescriptor": lambda b: decode(AttachmentDescriptor, b),
    "FrankedContent": lambda b: decode(FrankedContent, b),
    "SafeAADItem": lambda b: decode(SafeAADItem, b),
    "FrankingAAD": lambda b: decode(FrankingAAD, b),
    "ServerFrankingContext": lambda b: decode(ServerFrankingContext, b),
    "FrankingIntegrityTBS": lambda b: decode(FrankingIntegrityTBS, b),
    "ServerFrank": lambda b: decode(ServerFrank, b),
    "AbuseReport": lambda b: decode(AbuseReport, b),
    "ReceivedFrank": lambda b: decode(ReceivedFrank, b),
}
