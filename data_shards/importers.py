"""Open a build source by layout: the generic folder/label file, or a public dataset's own files.

Each public layout maps its label file onto :class:`~data_shards.schema.Labels` with the
dataset's AU ids and class names (docs/shards.md lists the expected files).
"""

from __future__ import annotations

from data_shards.config_checks import ConfigError
from data_shards.sources import Source, folder_source, label_file_source


def open_source(
    layout: str, media: str, labels: str, modality: str, source_name: str, au_ids: list[str], class_names: list[str], subject_from_folder: bool
) -> Source:
    """The source of ``layout`` over ``media`` with label file ``labels``."""
    if layout == "folder":
        if labels:
            return label_file_source(media, labels, source_name, au_ids, class_names)
        return folder_source(media, modality, source_name, subject_from_folder)
    raise ConfigError(f"layout={layout!r}: unknown layout")
