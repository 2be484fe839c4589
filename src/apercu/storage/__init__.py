"""Where things live: the blob store (bytes) and the catalog (state), opened together from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from apercu.config import Settings
from apercu.storage.blobs import BlobStore, LocalBlobStore
from apercu.storage.catalog import Catalog


@dataclass(frozen=True)
class Storage:
    catalog: Catalog
    blobs: BlobStore

    def forget_if_unrecorded(self, image_id: str) -> bool:
        """The one rule for files written while a delete may have raced with the writing (a worker's thumbnail, a
        variant): when the image's record is gone, its files go too. True when they went."""
        if self.catalog.get(image_id) is not None:
            return False
        self.blobs.delete(image_id)
        return True


def open_storage(settings: Settings, durable: bool = True) -> Storage:
    """Open (and create if needed) the data directory and the catalog schema (see `catalog.create_engine` for
    what `durable` means)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_url(settings.resolved_database_url, durable)
    catalog.create_schema()
    return Storage(catalog=catalog, blobs=LocalBlobStore(settings.data_dir))
