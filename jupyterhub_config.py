# The hub's whole configuration comes from classroom.yaml (or $D2LHUB_CONFIG).
from d2lhub.hubconfig import apply

apply(c)  # noqa: F821 -- `c` is JupyterHub's config object
