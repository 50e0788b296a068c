"""The suite's metrics adapter computes a quantile the way PromQL's histogram_quantile does
(the HPA must see what prometheus-adapter would serve from the chart's rules)."""

from __future__ import annotations

import math

import pytest

from tests.support.metrics_adapter import _quantity, histogram_quantile

pytestmark = pytest.mark.unit

INF = math.inf


def test_linear_within_the_bucket_the_rank_falls_in() -> None:
    buckets = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, INF: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.001)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.0015)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.0035)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.0005), "from 0 in the first"


def test_the_inf_bucket_reads_as_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, {0.1: 10.0, INF: 20.0}) == pytest.approx(0.1)


def test_no_observations_read_as_zero() -> None:
    assert histogram_quantile(0.99, {}) == 0.0
    assert histogram_quantile(0.99, {0.1: 0.0, INF: 0.0}) == 0.0


def test_values_are_quantities_the_hpa_parses() -> None:
    assert _quantity(0.0) == "0"
    assert _quantity(0.000872254) == "872254n"
    assert _quantity(20061.0) == "20061"
