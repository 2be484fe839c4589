"""Where things live: the blob store (bytes), the catalog (state) and the staging folder, opened together.

`Storage` holds the rules about an image's bytes that every caller shares: which keys are its files, that
deleting an image means its original and every thumbnail, and that a file written after the image's record
went must go too (`forget_if_unrecorded`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.storage.blobs import BlobStore, open_blob_store
from apercu.storage.catalog import Catalog
from apercu.storage.migrations.schema import create_schema
from apercu.storage.staging import Staging


@dataclass(frozen=True)
class Storage:
    catalog: Catalog
    blobs: BlobStore
    staging: Staging

    def put_original(self, image_id: str, upload: IO[bytes]) -> None:
        upload.seek(0)
        self.blobs.put(blob_keys.original(image_id), upload)

    def open_original(self, image_id: str) -> IO[bytes]:
        """The original as a real file (the imaging process is handed its descriptor); BlobMissing if gone."""
        return self.staging.as_file(self.blobs.open(blob_keys.original(image_id)))

    def has_original(self, image_id: str) -> bool:
        return self.blobs.exists(blob_keys.original(image_id))

    def put_thumbnail(self, image_id: str, size: int, ext: str, data: bytes) -> str:
        key = blob_keys.thumbnail(image_id, size, ext)
        self.blobs.put(key, data)
        return key

    def delete_files(self, image_id: str) -> None:
        """The original and every thumbnail and rendition; what is already gone is fine."""
        self.blobs.delete(blob_keys.original(image_id))
        for prefix in blob_keys.derived_of(image_id):
            for key in list(self.blobs.keys(prefix)):
                self.blobs.delete(key)

    def stored(self, older_than: float) -> Iterator[tuple[str, str]]:
        """(image id, key) of every original, thumbnail and rendition last written more than `older_than` seconds
        ago."""
        for prefix in blob_keys.PREFIXES:
            for key in self.blobs.keys(prefix, older_than):
                yield blob_keys.image_id_of(key), key

    def clean_staging(self, older_than: float) -> int:
        """What crashed uploads and interrupted writes left behind; returns how many things went."""
        return self.staging.clean(older_than) + self.blobs.clean_interrupted(older_than)

    def forget_if_unrecorded(self, image_id: str) -> bool:
        """The one rule for files written while a delete may have raced with the writing (a worker's thumbnail, a
        variant): when the image's record is gone, its files go too. True when they went."""
        if self.catalog.images.outline(image_id) is not None:  # (its row, without decoding its JSON)
            return False
        self.delete_files(image_id)
        return True


def open_storage(settings: Settings, durable: bool = True) -> Storage:
    """Open (and create if needed) the data directory, the blob store and the catalog schema (see
    `catalog.engine.create_engine` for what `durable` means)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_url(settings.resolved_database_url, durable)
    create_schema(catalog.engine)
    return Storage(catalog=catalog, blobs=open_blob_store(settings), staging=Staging(settings.data_dir / "tmp"))
