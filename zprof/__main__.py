import sys

from zprof.cli import main

sys.exit(main())
