"""Model monitoring: baselines, data quality, data drift, model quality, bias drift, alerts.

The workspace service is :class:`wellml.monitoring.service.Monitoring` (``ws.monitoring``);
the checks it runs are small objects usable on their own: the drift tests in
:mod:`wellml.monitoring.drift`, :class:`~wellml.monitoring.quality.DataQualityCheck`,
:class:`~wellml.monitoring.model_quality.ModelQualityCheck`,
:class:`~wellml.monitoring.bias_drift.BiasDriftCheck` and
:class:`~wellml.monitoring.poisoning.PoisoningCheck`. Importing this package imports none of
them, so ``wellml.monitoring.drift`` stays light for workers that need only the statistics.
"""
