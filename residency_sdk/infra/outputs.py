"""Read deployed stack outputs back into a region-map overlay.

``pulumi stack output --json`` (or ``terraform output -json``) gives the ``residency``
output both renderers export; :func:`overlay_from_outputs` turns it into a map overlay
(``extends: default``) that pins each backend to exactly what was deployed, so the SDK
routes to the real buckets and keys. Every problem is an :class:`InfraError` naming the
field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from residency_sdk.errors import InfraError
from residency_sdk.infra.plan import CLOUD_PROVIDERS

# Output field -> region-map backend field. Azure's key URI is not written back: the Blob
# adapter encrypts through the encryption scope, which the map names already.
_FIELDS: dict[str, tuple[str, ...]] = {
    "aws": ("region", "failover_region", "bucket", "kms_key"),
    "gcp": ("region", "failover_region", "bucket", "kms_key"),
    "azure": ("region", "failover_region", "bucket", "account", "encryption_scope"),
}


def read_outputs(path: str | Path) -> dict[str, Any]:
    """Parse an outputs JSON file into the ``residency`` output value."""
    file = Path(path)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InfraError(f"cannot read stack outputs {str(file)!r}: {exc.strerror}; pass the "
                         "file written by `pulumi stack output --json > FILE`") from None
    except json.JSONDecodeError as exc:
        raise InfraError(f"stack outputs {str(file)!r} are not JSON ({exc.msg} at line "
                         f"{exc.lineno}): pass `pulumi stack output --json` or "
                         "`terraform output -json`") from None
    return residency_output(raw)


def residency_output(raw: Any) -> dict[str, Any]:
    """The ``residency`` value from Pulumi (``{"residency": {...}}``), Terraform
    (``{"residency": {"value": {...}}}``) or the bare value."""
    if isinstance(raw, Mapping) and "residency" in raw:
        raw = raw["residency"]
        if isinstance(raw, Mapping) and "value" in raw and "location" not in raw:
            raw = raw["value"]
    if not isinstance(raw, Mapping) or not isinstance(raw.get("location"), str):
        raise InfraError("stack outputs have no `residency` output with a `location`: "
                         "export them from a residency stack (infra/ or the Terraform export)")
    return dict(raw)


def overlay_from_outputs(outputs: Mapping[str, Any], *, extends: str = "default") -> dict[str, Any]:
    """A region-map overlay document pinning the location's backends to the outputs."""
    value = residency_output(outputs)
    location = value["location"]
    backends = value.get("backends")
    if not isinstance(backends, Mapping) or not backends:
        raise InfraError(f"stack outputs of location {location!r} have no `backends`: "
                         "nothing was deployed, or the outputs are from another program")
    pinned: dict[str, dict[str, Any]] = {}
    for provider, fields in backends.items():
        if provider not in CLOUD_PROVIDERS or not isinstance(fields, Mapping):
            raise InfraError(f"stack outputs name unknown backend {provider!r} for "
                             f"{location!r}: expected one of {', '.join(CLOUD_PROVIDERS)}")
        entry = {}
        for name in _FIELDS[provider]:
            item = fields.get(name)
            if item is None:
                continue
            if not isinstance(item, str) or not item or "${" in item:
                raise InfraError(f"stack output backends.{provider}.{name} of {location!r} is "
                                 f"{item!r}: expected the deployed value (run after "
                                 "`pulumi up` / `terraform apply`)")
            entry[name] = item
        for required in ("region", "bucket"):
            if required not in entry:
                raise InfraError(f"stack output backends.{provider}.{required} of "
                                 f"{location!r} is missing")
        pinned[provider] = entry
    return {
        "version": 1,
        "name": f"{value.get('map', 'default')}-deployed-{location.lower()}",
        "extends": extends,
        "source": f"stack outputs of residency location {location}",
        "locations": {location: {"backends": pinned}},
    }
