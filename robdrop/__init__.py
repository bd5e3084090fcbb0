"""robdrop: study why robustness drops when adversarial training runs too long."""

__version__ = "0.1.0"
