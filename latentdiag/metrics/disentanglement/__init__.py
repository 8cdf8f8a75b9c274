"""Disentanglement metrics: codes against ground-truth factors (MIG, DCI, SAP, modularity,
FactorVAE score). Any number of codes and factors; factors may be discrete or continuous
(continuous ones are binned where a metric needs classes)."""
