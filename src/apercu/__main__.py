import sys

from apercu.cli import main

sys.exit(main())
