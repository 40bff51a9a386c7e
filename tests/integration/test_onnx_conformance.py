"""ONNX's own node tests for the CNN-relevant ops pass on edgec's backend (edgec.backend), run by
onnx.backend.test.BackendTest with the suite's own tolerances; each expected failure is listed in
tests/data/onnx_expected_failures.toml with TVM's reason and runs as a strict xfail."""

from __future__ import annotations

import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

import edgec.backend
from edgec import conformance

pytestmark = pytest.mark.integration

CNN_CASES = sorted(
    case.name
    for case in load_model_tests(kind="node")  # the cases BackendTest runs, collected in process
    if conformance.category("node", case.name, case.model) in conformance.CNN_CATEGORIES
)


def _backend_tests() -> dict[str, type]:
    """BackendTest's test classes holding only the CNN cases (BackendTest would keep the rest as
    skipped tests), expected failures marked xfail with their reason."""
    suite = onnx.backend.test.BackendTest(edgec.backend, __name__)
    for name in CNN_CASES:
        suite.include(f"^{name}_cpu$")
    included = {f"{name}_cpu" for name in CNN_CASES}
    expected = conformance.expected_failures()
    classes = {}
    for class_name, test_class in suite.test_cases.items():
        for attribute in [a for a in vars(test_class) if a.startswith("test_")]:
            if attribute not in included:
                delattr(test_class, attribute)
                continue
            reason = conformance.expected_reason(attribute.removesuffix("_cpu"), expected)
            if reason is not None:
                method = getattr(test_class, attribute)
                setattr(
                    test_class, attribute, pytest.mark.xfail(reason=reason, strict=True)(method)
                )
        if any(a.startswith("test_") for a in vars(test_class)):
            classes[class_name] = test_class
    return classes


globals().update(_backend_tests())


def test_expected_failures_name_existing_cases() -> None:
    """Every entry of the expected-failure file matches at least one case of the suite."""
    names = [c.name for c in load_model_tests(kind="node")]
    names += [c.name for c in conformance.cases(conformance.MODEL_KINDS)]
    expected = conformance.expected_failures()
    unmatched = [
        p
        for p in expected
        if not any(conformance.expected_reason(n, {p: ""}) is not None for n in names)
    ]
    assert not unmatched
