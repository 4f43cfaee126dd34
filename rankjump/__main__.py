import sys

from rankjump.cli.main import main

sys.exit(main())
