"""``python -m fhirhub.plugins.ohif``: install the pinned OHIF Viewer (see ``install.py``)."""

import sys

from fhirhub.plugins.ohif.install import main

sys.exit(main())
