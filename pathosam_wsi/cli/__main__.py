"""``python -m pathosam_wsi.cli``: the same CLI as the ``pathosam-wsi`` console script."""

from pathosam_wsi.cli.app import main

main(prog_name="pathosam-wsi")
