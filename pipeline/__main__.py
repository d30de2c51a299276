import signal
import sys

from pipeline.cli import main

try:
    code = main()
except KeyboardInterrupt:      # a Ctrl-C landing between main's own handler and here
    print("stopped.", file=sys.stderr)
    code = 130
# A late Ctrl-C during interpreter shutdown must not turn a clean exit into a traceback / signal death.
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
