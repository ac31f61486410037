"""pydicom is optional: ``import residency_sdk`` never imports it, ``rs.deid`` imports
lazily without it, and using the de-identifier without it names the extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_residency_sdk_does_not_import_pydicom() -> None:
    proc = _run("""
        import sys
        import residency_sdk as rs
        assert 'pydicom' not in sys.modules
        deid = rs.deid   # lazy
        assert deid.BASIC_PROFILE.edition == '2026c'
        assert 'pydicom' not in sys.modules, 'residency_sdk.deid imported pydicom'
        print('ok')
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_without_pydicom_the_error_names_the_extra() -> None:
    proc = _run("""
        import sys
        sys.modules['pydicom'] = None   # as if not installed
        import residency_sdk as rs
        from residency_sdk.deid import DeidKey, deidentify_dicom, check_dicom, is_dicom
        assert not is_dicom(b'abc')
        for call in (lambda: deidentify_dicom(b'\\0' * 128 + b'DICM', tenant='t',
                                              key=DeidKey('k', b'k' * 32)),
                     lambda: check_dicom(b'\\0' * 128 + b'DICM')):
            try:
                call()
            except rs.SDKNotInstalled as exc:
                assert "pip install 'residency-sdk[dicom]'" in str(exc), exc
            else:
                raise AssertionError('no error')
        print('ok')
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_rs_has_no_other_lazy_attribute() -> None:
    import residency_sdk as rs

    try:
        rs.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
