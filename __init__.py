"""thresher: web-scale pretraining data pipeline on Spark (the dots.llm1 recipe) and its MoE trainer.

Every module is imported as `thresher.<folder>.<module>`: setup.cfg maps the package `thresher` onto
this directory, so a user's own `jobs` or `pipeline` module on a cluster's Python path never shadows
one of thresher's. See README.md, "Architecture", for the layout.
"""
