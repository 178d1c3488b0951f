"""Release directories: the selected model, its model card, provenance and checksums."""
