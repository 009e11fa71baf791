import sys

from wiseft.cli import main

sys.exit(main())
