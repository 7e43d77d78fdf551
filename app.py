"""`python app.py`: the chat app in the browser (the code is rag/app.py; `rag-chat serve` runs the same)."""

import sys

from rag.app import *  # noqa: F401,F403 - the app's functions, for `from app import respond`
from rag.app import main

if __name__ == "__main__":
    sys.exit(main())
