"""Analyses of trained runs (``probsym analyze``): what p(g|x) learned and what sampling costs.

* :mod:`~probsym.analysis.logs`: the training curves a run logged (permutation entropy,
  gradient norms) from ``log.csv``.
* :mod:`~probsym.analysis.sampling`: studies of a restored model: the test metric against the
  inference sample count with Monte Carlo error bars, the variance of the outputs and of the
  loss against that count, and the entropy of the sampled permutations at a checkpoint.
* :mod:`~probsym.analysis.plots`: PNG figures, each with the CSV it draws.
* :mod:`~probsym.analysis.report`: :func:`analyze`, all of the above for one run and the runs it
  is compared with.

Computations take tensors and return rows (dicts); only ``plots`` imports matplotlib.
"""

from __future__ import annotations

from probsym.analysis.report import AnalyzeOptions, analyze

__all__ = ["AnalyzeOptions", "analyze"]
