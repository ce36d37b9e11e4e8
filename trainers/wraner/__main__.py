import sys

from trainers.wraner.cli import main

sys.exit(main())
