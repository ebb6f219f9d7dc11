"""The metadata store, the artifact store, and the SQL of every capability."""
