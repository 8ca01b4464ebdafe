"""``pathosam-wsi finetune``: train the map U-Net on annotated nuclei (README "Fine-tuning").

Stages, one module each: ``data`` (image + label pairs), ``regions`` (slides + QuPath GeoJSON /
GeoParquet nuclei inside annotated regions), ``targets`` (the reference's three training maps),
``augment`` (H&E augmentations), ``loss`` (the reference loss), ``train`` (the seeded loop with a
held-out split, checkpoints and resume).
"""
