"""Each Winograd F(m,3) table in edgec.relax.winograd computes a 3x3 correlation of an input
tile exactly (in float64): Y = A^T [(G g G^T) * (B^T d B)] A."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.relax.winograd import FORMS


@pytest.mark.parametrize("m", sorted(FORMS), ids=[f"F({m},3)" for m in sorted(FORMS)])
def test_winograd_form_computes_a_3x3_correlation(m: int) -> None:
    b_t, g, a_t = FORMS[m]
    rng = np.random.default_rng(m)
    d = rng.standard_normal((m + 2, m + 2))
    w = rng.standard_normal((3, 3))
    got = a_t @ ((g @ w @ g.T) * (b_t @ d @ b_t.T)) @ a_t.T
    want = np.array([[np.sum(d[i : i + 3, j : j + 3] * w) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
