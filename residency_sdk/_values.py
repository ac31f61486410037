"""Frozen value types whose construction errors are residency errors.

Users build tenants and agreements from configuration; a bad field must reach them as the
:class:`~residency_sdk.errors.ResidencyError` the field's validator raised (naming the
value and the fix), never as a pydantic ``ValidationError``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from residency_sdk.errors import InvalidTenant, ResidencyError


class FrozenValue(BaseModel):
    """A frozen, hashable pydantic value that raises residency errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    value_name: ClassVar[str] = "value"
    """How error messages name the value ("tenant", "agreement")."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise residency_error_from(exc, self.value_name) from None


def residency_error_from(exc: ValidationError, what: str = "tenant") -> ResidencyError:
    """The first :class:`ResidencyError` inside a pydantic error, or an InvalidTenant
    naming the field of ``what`` that failed."""
    errors = exc.errors(include_url=False)
    for err in errors:
        original = (err.get("ctx") or {}).get("error")
        if isinstance(original, ResidencyError):
            return original
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or what
    shown = first.get("input")
    value = "" if isinstance(shown, (dict, list)) else f" ({shown!r})"
    return InvalidTenant(f"invalid {what} field {field!r}{value}: {first['msg']}")
