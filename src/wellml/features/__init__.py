"""Feature store: entities, feature views, offline point-in-time joins, online serving."""
