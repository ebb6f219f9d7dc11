"""Contract test suites that every backend of a kind passes.

A backend's tests subclass the contract and provide one fixture, e.g.::

    class TestSQLite(MetadataStoreContract):
        @pytest.fixture
        def store_url(self, tmp_path):
            return f"sqlite:///{tmp_path}/metadata.db"
"""

from wellml.testing.artifacts import ArtifactStoreContract
from wellml.testing.metadata import MetadataStoreContract
from wellml.testing.online import OnlineStoreContract

__all__ = ["ArtifactStoreContract", "MetadataStoreContract", "OnlineStoreContract"]
