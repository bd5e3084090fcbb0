"""The uncertainty every reported accuracy carries: a 95 % interval over the test images it was
measured on (Wilson's score interval, which stays inside [0, 1] near 0 % and 100 %)."""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson_interval(accuracy: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95 % Wilson score interval of an accuracy (a fraction) measured on `n` images."""
    if n <= 0:
        raise ValueError(f"an interval needs at least one image, not n={n}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy is a fraction in [0, 1], not {accuracy}")
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    # the interval contains the estimate (rounding would put 1e-16 above an accuracy of 0)
    return min(accuracy, max(0.0, centre - half)), max(accuracy, min(1.0, centre + half))
