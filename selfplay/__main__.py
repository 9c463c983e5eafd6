import sys

from selfplay.cli.main import main

sys.exit(main())
