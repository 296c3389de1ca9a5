import sys

from crossfake.cli.main import main

sys.exit(main())
