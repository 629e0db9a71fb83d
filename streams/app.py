"""Entry point for faust's own CLI: ``faust -A streams.app worker -l info``.

Settings come from the environment (``PFILTER_*``), as with ``pfilter worker``.
"""

from streams.runtime.faust_app import create_app

app = create_app()
