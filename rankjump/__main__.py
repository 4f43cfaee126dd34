import sys

from rankjump.cli import main

sys.exit(main())
