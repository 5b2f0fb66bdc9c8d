import sys

from tools.validate.cli import main

sys.exit(main())
