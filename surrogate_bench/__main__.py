import sys

try:  # Ctrl-C while the first imports run (torch takes seconds) is one line, not a traceback
    from .cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
