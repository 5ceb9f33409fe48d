"""The PrestaShop v2 status mapping (``GET /shop-order-statuses/mapping``) as the API sends
it, validated into typed values. What is wrong with a mapping is decided elsewhere
(``monitor.checks``)."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.sendcloud.errors import InvalidResponse

#: Sendcloud's internal status categories; the spec says the answer has an entry for each.
CATEGORIES = ("READY_TO_SEND", "IN_TRANSIT", "DELIVERED", "CANCEL")


@dataclass(frozen=True, slots=True)
class MappingEntry:
    status_category: str
    external_id: str | None  # the shop's status it maps to; None: unmapped
    is_valid: bool  # False: it points at a status the shop deleted


@dataclass(frozen=True, slots=True)
class StatusMapping:
    integration_id: int
    entries: tuple[MappingEntry, ...]


def parse_status_mapping(body: object, integration_id: int) -> StatusMapping:
    """``{"data": {"integration_id": N, "mapping": [...]}}``; anything else is an invalid
    answer (InvalidResponse), as is a mapping for another integration."""
    data = body.get("data") if isinstance(body, dict) else None
    mapping = data.get("mapping") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(mapping, list):
        raise InvalidResponse(
            "the status mapping answer has no 'data.mapping' array",
            status=200,
            reason="invalid_record",
        )
    answered_for = data.get("integration_id", integration_id)
    if answered_for != integration_id:
        raise InvalidResponse(
            f"asked for the mapping of integration {integration_id}, got {answered_for!r}",
            status=200,
            reason="id_mismatch",
        )
    entries = []
    for item in mapping:
        if not isinstance(item, dict) or not isinstance(item.get("status_category"), str):
            raise InvalidResponse(
                "a status mapping entry has no status_category", status=200, reason="invalid_record"
            )
        external = item.get("external_id")
        valid = item.get("is_valid", True)
        bad_external = external is not None and not isinstance(external, str | int)
        if bad_external or not isinstance(valid, bool):
            raise InvalidResponse(
                "a status mapping entry has an invalid external_id or is_valid",
                status=200,
                reason="invalid_record",
            )
        entries.append(
            MappingEntry(
                item["status_category"], None if external is None else str(external), valid
            )
        )
    return StatusMapping(integration_id, tuple(entries))
