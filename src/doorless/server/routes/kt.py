"""``/v1/kt/*``: the key-transparency log (`doorless.server.kt_service`).

* ``GET /v1/kt/info`` — the log's origin and checkpoint key, the witnesses it collects for;
* ``GET /v1/kt/head?since=N`` — signed checkpoint with cosignatures, consistency proof from
  size N, last log entry with its inclusion proof;
* ``GET /v1/kt/search?label=HEX&since=N&from_version=V`` — a head and the label's greatest
  version (binary ladder, prefix proof) and its versions V.. below it (authenticated, like the
  directory);
* ``GET /v1/kt/audit?start=I&limit=L`` — what each log entry added, for witnesses to replay;
* ``POST /v1/kt/cosignatures`` — a witness hands in its cosignature of a checkpoint.

Binary values are standard base64 of the TLS encodings of `doorless.kt` (``LogEntry``,
``SearchResponse``, ``VersionResponse``, ``PrefixProof``, ``AuditEntry``); checkpoints are
C2SP signed notes as text. Everything here is public data: no answer holds a secret.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from doorless.errors import DecodeError, InvalidSignature, ValidationError
from doorless.server.auth import limit_anonymous
from doorless.server.context import ServerContext
from doorless.server.errors import ApiError, bad_request
from doorless.server.kt_service import KtService
from doorless.server.routes.common import AUTHED, Ctx, Device, errors
from doorless.server.schemas import Request
from doorless.wire.errors import ErrorCode
from doorless.wire.kt import MAX_AUDIT_PAGE

router = APIRouter(prefix="/v1/kt", tags=["key transparency"])

MAX_SIZE = 2**62
MAX_VERSION = 2**32 - 1
LABEL_PATTERN = r"^([0-9a-f]{2}){1,255}$"


class KtInfoBody(BaseModel):
    origin: str = Field(description="Checkpoint origin, also the log key's name")
    log_key: str = Field(description="c2sp.org/signed-note verifier key of the log (Ed25519)")
    witnesses: list[str] = Field(description="Witness keys whose cosignatures the log keeps")


class KtHeadBody(BaseModel):
    checkpoint: str = Field(description="C2SP signed note: the log's signature, cosignatures")
    since: int
    consistency: list[str] = Field(description="RFC 9162 consistency proof since -> size")
    last_entry: str | None = Field(description="The last LogEntry (base64); null: empty log")
    last_entry_proof: list[str] = Field(description="Its RFC 9162 inclusion proof")


class KtSearchBody(BaseModel):
    head: KtHeadBody
    label: str = Field(description="hex")
    result: str | None = Field(description="SearchResponse (greatest version), base64")
    absent: str | None = Field(description="PrefixProof that the label has no version")
    versions: list[str] = Field(description="VersionResponse of each requested version")


class KtAuditItemBody(BaseModel):
    index: int
    log_entry: str
    audit: str = Field(description="AuditEntry: timestamp and the PrefixLeafs added")


class KtAuditBody(BaseModel):
    size: int
    entries: list[KtAuditItemBody]


class CosignRequest(Request):
    checkpoint: Annotated[str, Field(max_length=64 * 1024)] = Field(
        description="The signed checkpoint note carrying the witness's cosignature line(s)"
    )


class CosignResponse(BaseModel):
    accepted: int


def kt_of(ctx: ServerContext) -> KtService:
    return ctx.kt


Since = Annotated[int, Query(ge=0, le=MAX_SIZE)]


@router.get(
    "/info",
    response_model=KtInfoBody,
    responses=errors(429),
    dependencies=[Depends(limit_anonymous)],
)
async def kt_info(ctx: Ctx) -> dict[str, Any]:
    """The log's identity: pin ``log_key``, choose the witnesses you trust."""
    return kt_of(ctx).info().to_json()


@router.get(
    "/head",
    response_model=KtHeadBody,
    responses=errors(422, 429),
    dependencies=[Depends(limit_anonymous)],
)
async def kt_head(ctx: Ctx, since: Since = 0) -> dict[str, Any]:
    """The latest signed checkpoint, proven consistent with the checkpoint of size ``since``."""
    return (await kt_of(ctx).head(since)).to_json()


@router.get(
    "/search",
    response_model=KtSearchBody,
    responses=errors(*AUTHED, 422),
)
async def kt_search(
    _me: Device,
    ctx: Ctx,
    label: Annotated[str, Query(pattern=LABEL_PATTERN)],
    since: Since = 0,
    from_version: Annotated[int, Query(ge=0, le=MAX_VERSION)] = 0,
) -> dict[str, Any]:
    """The greatest version of ``label`` and its versions ``from_version`` .. below it."""
    return (await kt_of(ctx).search(bytes.fromhex(label), since, from_version)).to_json()


@router.get(
    "/audit",
    response_model=KtAuditBody,
    responses=errors(422, 429),
    dependencies=[Depends(limit_anonymous)],
)
async def kt_audit(
    ctx: Ctx,
    start: Since = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
) -> dict[str, Any]:
    """Log entries from ``start``: each one's LogEntry and the prefix-tree leaves it added."""
    return (await kt_of(ctx).audit(start, limit)).to_json()


@router.post(
    "/cosignatures",
    response_model=CosignResponse,
    responses=errors(400, 422, 429),
    dependencies=[Depends(limit_anonymous)],
)
async def kt_cosign(body: CosignRequest, ctx: Ctx) -> CosignResponse:
    """A witness's cosignature of a checkpoint of this log (kept if the witness is known)."""
    try:
        accepted = await kt_of(ctx).add_cosignatures(body.checkpoint.encode("utf-8"))
    except DecodeError:
        raise bad_request("not a signed checkpoint note") from None
    except InvalidSignature:
        raise ApiError(400, ErrorCode.INVALID_SIGNATURE, "a cosignature does not verify") from None
    except ValidationError as exc:
        raise bad_request(str(exc)) from None
    return CosignResponse(accepted=accepted)
