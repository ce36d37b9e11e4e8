import sys

from trainers.cllmfs.cli import main

sys.exit(main())
