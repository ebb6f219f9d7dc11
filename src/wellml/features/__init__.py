"""Feature store: entities, feature views, on-demand features and feature services; offline
point-in-time retrieval on DuckDB, online serving from SQLite or Redis.

    from wellml.features import Entity, FeatureView, FeatureService, Field, Source
    ws.features.apply([
        Entity("customer", join_keys=("customer_id",)),
        FeatureView("activity", entities=("customer",), source=Source(dataset="activity"),
                    timestamp_field="event_timestamp", ttl="90d"),
        FeatureService("churn", features=("activity:*",)),
    ])
    training = ws.features.get_historical_features(labels, "churn")
"""

from wellml.features.definitions import (
    DTYPES,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeatureView,
    Source,
    on_demand_feature_view,
)
from wellml.features.service import (
    FeatureDefinitionVersion,
    FeaturePlan,
    FeatureStore,
    Materialization,
    OnlineFeatures,
    PlanItem,
)

__all__ = [
    "DTYPES",
    "Entity",
    "FeatureDefinitionVersion",
    "FeaturePlan",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "Field",
    "Materialization",
    "OnDemandFeatureView",
    "OnlineFeatures",
    "PlanItem",
    "Source",
    "on_demand_feature_view",
]
