"""Property-based API testing: schemathesis drives every documented endpoint of a live server.

Requests are generated from ``/openapi.json`` (valid and invalid parameters, random uploads); every
answer must be a non-5xx whose status, content type and body match the schema. Bounded for CI by
``LOOKALIKE_SCHEMATHESIS_EXAMPLES`` (default 12 per operation, ~1-2 minutes); raise it for a deeper
run, e.g. ``LOOKALIKE_SCHEMATHESIS_EXAMPLES=200 pytest tests/reliability/test_schemathesis.py``.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ..server import running_server  # noqa: E402

EXAMPLES = int(os.environ.get("LOOKALIKE_SCHEMATHESIS_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_server(settings):
    # small limits keep random uploads cheap; a rate limit would only add 429s, so it stays off
    with running_server(settings, LOOKALIKE_MAX_UPLOAD_BYTES=str(512 * 1024)) as url:
        yield url


def _fuzz_operation(operation, base_url: str, mode) -> str | None:
    """Run the bounded hypothesis search for one operation; the failure text, or None."""

    @given(operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases every CI run; raise EXAMPLES for exploration
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=60)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, report all
        return f"{operation.label} [{mode.value}]: {type(exc).__name__}: {str(exc)[:1500]}"
    return None


def test_every_endpoint_matches_its_schema(live_server):
    # schemathesis' own pytest plugin does not support this pytest yet, so drive it directly
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := _fuzz_operation(operation, live_server, mode))
    ]
    assert not failures, "\n\n".join(failures)
