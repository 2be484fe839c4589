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


def open_storage(settings: Settings, durable: bool = True) -> Storage:
    """Open (and create if needed) the data directory and the catalog schema (see `catalog.create_engine` for
    what `durable` means)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_url(settings.resolved_database_url, durable)
    catalog.create_schema()
    return Storage(catalog=catalog, blobs=LocalBlobStore(settings.data_dir))
