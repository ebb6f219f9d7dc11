"""Model monitoring: baselines, drift, data quality and model quality."""
