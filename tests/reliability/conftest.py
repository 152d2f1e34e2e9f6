"""The reliability suite: profile, figures report, and the log capture shared with tests/security/."""

import time

import pytest

from tests.reliability import profile


@pytest.fixture(scope="session", autouse=True)
def reliability_report(request):
    """Capture the logs of the run and, in the long profile, write docs/reliability.md at the end."""
    profile.start_log_capture()
    profile.record_issued_tokens()
    started = time.monotonic()
    yield
    if profile.LONG:
        failed = request.session.testsfailed
        profile.write_report(time.monotonic() - started, "passed" if not failed else f"{failed} failed")
