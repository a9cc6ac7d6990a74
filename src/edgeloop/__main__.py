import sys

from edgeloop.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
