import sys

from finegrain.cli import main

sys.exit(main())
