"""Prompted segmentation: prompts (boxes, points) -> masks with a SAM-style prompt decoder.

``parse`` reads prompt files, ``windows`` fixes the model's window grid and who serves each prompt,
``decode`` runs the model window by window, ``paint`` resolves overlaps, ``run`` writes outputs.
"""
