"""``pathosam-wsi finetune``: train the map U-Net or a SAM decoder on nuclei (README "Fine-tuning").

Stages, one module each: ``data`` (image + label pairs), ``regions`` (slides + QuPath GeoJSON /
GeoParquet nuclei inside annotated regions), ``targets`` (the reference's three training maps),
``augment`` (H&E augmentations), ``loss`` (the reference loss), ``train`` (the seeded loop with a
held-out split, checkpoints and resume), ``trainable`` (what the loop trains: the U-Net) and
``sam_decoder`` (a PathoSAM model's UNETR AIS decoder over its frozen SAM encoder).
"""
