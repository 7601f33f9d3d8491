"""Stage 5, evaluation: metrics with cluster-bootstrap intervals, paired differences, the concentration baselines, tables, figures."""
