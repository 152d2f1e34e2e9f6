"""The security suite: the same session fixture as tests/reliability/ (one report, one log capture)."""

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
        outcome = "passed" if not failed else f"{failed} failed"
        profile.write_report(time.monotonic() - started, outcome, request.config.invocation_params.args)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users are created per test here (the matrix makes hundreds); real hashing would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
