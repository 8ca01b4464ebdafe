"""Writers: OME-Zarr (NGFF 0.4) nucleus labels, GeoParquet 1.1 nucleus table, run.json."""
