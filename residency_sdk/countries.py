"""ISO 3166-1 alpha-2 country codes: normalisation and validation."""

from __future__ import annotations

from functools import cache

from residency_sdk.errors import InvalidCountry


@cache
def iso_alpha2_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code, from pycountry's copy of the ISO table."""
    import pycountry  # imported lazily: its database is only read on first use

    return frozenset(country.alpha_2 for country in pycountry.countries)


def normalise_country(value: object) -> str:
    """Return ``value`` as an upper-case ISO alpha-2 code, or raise :class:`InvalidCountry`.

    Case and surrounding blanks are forgiven; anything else that is not a current ISO
    3166-1 alpha-2 code (``"UK"``, ``"EU"``, ``""``, ``"DEU"``) is refused.
    """
    if not isinstance(value, str):
        raise InvalidCountry(value)
    code = value.strip().upper()
    if len(code) == 2 and code in iso_alpha2_codes():
        return code
    hint = ""
    if code == "UK":
        hint = "the United Kingdom's ISO code is 'GB'"
    elif code in {"EU", "EEA"}:
        hint = f"{code!r} is a group: pass the member state's own code"
    elif len(code) == 3 and code.isalpha():
        hint = "use the two-letter (alpha-2) code, not alpha-3"
    raise InvalidCountry(value, hint)
