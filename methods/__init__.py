"""Built-in SSL methods, registered by explicit import (no directory scanning).

Adding a method: write ``methods/<name>.py`` with a ``Config`` dataclass and an ``SSLMethod``
subclass decorated with ``@register_method``, and import it here (or register it from another
package through the ``ecg_bench.methods`` entry-point group).
"""

# The import order is the registration order: how `bench methods` lists them, and the order of
# `--method all`.
from methods import simclr  # noqa: F401, I001
from methods import byol, ecg_jepa, jepa, mae  # noqa: F401
