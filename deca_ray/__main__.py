"""``python -m deca_ray`` — the entry point ``ray job submit`` uses."""

import sys

from deca_ray.cli import main

sys.exit(main())
